"""End-to-end training: main in subprocesses (sharding, preemption, resume), the loop in-process."""
import json
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from action_jax.models import io as model_io
from action_jax.tools import analyze_logs
from tolerances import EPS32, assert_close_norm

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO / 'tests' / 'configs' / 'tsn_tiny.py'
STEPS_PER_EPOCH = 4  # 16 training videos // batch 4


@pytest.fixture(scope='module')
def data_dir(tiny_synthetic):
    return tiny_synthetic


def _cmd(data_dir, workdir, *overrides, mode='train'):
    return [sys.executable, '-m', 'action_jax.main', f'--config={TINY}:{data_dir}',
            f'--workdir={workdir}', f'--mode={mode}', *overrides]


def _env(devices: int = 1):
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    return env


def run_main(data_dir, workdir, *overrides, devices=1, mode='train', check=True):
    proc = subprocess.run(_cmd(data_dir, workdir, *overrides, mode=mode), env=_env(devices),
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'main failed ({proc.returncode}):\n{proc.stderr[-5000:]}')
    return proc


def params_of(workdir) -> dict[str, np.ndarray]:
    weights = model_io.restore_weights(model_io.resolve(str(workdir))[1])
    flat = {}

    def visit(prefix, tree):
        if isinstance(tree, dict):
            for k, v in tree.items():
                visit(f'{prefix}.{k}' if prefix else str(k), v)
        elif jax.dtypes.issubdtype(tree.dtype, jax.dtypes.prng_key):
            flat[prefix] = np.asarray(jax.random.key_data(tree))  # dropout rng streams
        else:
            flat[prefix] = np.asarray(tree)
    visit('', weights)
    return flat


def scalars(workdir) -> list[dict]:
    """The logged values, without their wall-clock time (which differs between runs)."""
    with open(pathlib.Path(workdir) / 'scalars.jsonl') as f:
        return [{k: v for k, v in json.loads(line).items() if k != 'time'} for line in f]


def assert_trained_alike(params, ref, losses, ref_losses):
    """A few SGD steps on the same global batches, whose sums ran in another order (devices,
    processes, per-device batch sizes).

    Per tensor, relative to its largest value. BatchNorm biases start at 0 and the next
    BatchNorm cancels most of their gradient, so the few-ulp differences of the reordered
    float32 sums are large next to it and grow over the steps: up to 2.1% after 4 steps (Xeon
    AVX-512, 2 processes vs 1), a chaotic growth that may differ by CPU: allow 10%. Every other
    tensor moved by < 0.1%: allow 1%, which still catches what would move the parameters by
    order 1 (BatchNorm over each device's batch instead of the global one, other data per step,
    a gradient summed over part of the devices). The loss, a mean of the same samples, drifts
    with the parameters: up to 8e-6 apart at step 4; allow 1e-4.
    """
    assert params.keys() == ref.keys()
    for k, value in ref.items():
        if value.dtype.kind != 'f':
            np.testing.assert_array_equal(params[k], value, err_msg=k)  # rng streams
        else:
            rel = 1e-1 if k.startswith('params.') and k.endswith('bn.bias') else 1e-2
            assert_close_norm(params[k], value, rel, err_msg=k)
    assert_close_norm(losses, ref_losses, 1e-4)


def latest_step(workdir) -> int:
    return int(pathlib.Path(model_io.resolve(str(workdir))[1]).name)


@pytest.fixture(scope='module')
def reference_run(data_dir, tmp_path_factory):
    """3 uninterrupted epochs with a data-loader worker process."""
    workdir = tmp_path_factory.mktemp('reference')
    run_main(data_dir, workdir, '--config.train_dataloader.num_workers=1')
    return workdir


def test_training_learns_and_writes_outputs(reference_run):
    log = scalars(reference_run)
    losses = [r['loss'] for r in log if 'loss' in r]
    assert len(losses) == 3 * STEPS_PER_EPOCH
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert any('val/acc/top1' in r for r in log)
    assert any('test/acc/top1' in r for r in log)
    # Strict JSON (no NaN for the first step's not yet measured throughput); training records
    # carry their epoch, so cal_train_time tells the epochs apart without being told their length.
    with open(pathlib.Path(reference_run) / 'scalars.jsonl') as f:
        for line in f:
            json.loads(line, parse_constant=lambda c: pytest.fail(f'{c} in {line}'))
    train = [r for r in log if 'loss' in r]
    assert [r['epoch'] for r in train] == [(r['step'] - 1) // STEPS_PER_EPOCH + 1 for r in train]
    records = analyze_logs.load_records(str(reference_run))
    times = analyze_logs.epoch_times(records, 'scalars.jsonl', None, include_outliers=False)
    assert sorted(times) == [1, 2, 3]
    assert all(len(t) == STEPS_PER_EPOCH - 1 for t in times.values())  # first ones left out
    assert (pathlib.Path(reference_run) / 'config.json').exists()
    assert list(pathlib.Path(reference_run).glob('events.out.tfevents.*'))
    assert latest_step(reference_run) == 3 * STEPS_PER_EPOCH
    assert (pathlib.Path(reference_run) / 'best').is_dir()
    # The log keeps the loop's lines and drops orbax's per-save INFO chatter.
    text = (pathlib.Path(reference_run) / 'log.INFO').read_text()
    assert 'Validation after epoch 3' in text
    fractions = [r['input_bound_fraction'] for r in log if 'loss' in r]
    assert len(fractions) == len(losses) and all(0 <= f <= 1 for f in fractions)
    assert 'input-bound ' in text
    assert 'Started save checkpoint' not in text and 'orbax-checkpoint version' not in text


def test_sigterm_then_resume_is_bit_identical(data_dir, reference_run, tmp_path):
    proc = subprocess.Popen(_cmd(data_dir, tmp_path, '--config.train_dataloader.num_workers=1'),
                            env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ckpts = tmp_path / 'checkpoints'
    deadline = time.time() + 300
    while not (ckpts.is_dir() and any(d.name.isdigit() for d in ckpts.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert 'exiting for preemption' in err
    interrupted_at = latest_step(tmp_path)
    assert STEPS_PER_EPOCH <= interrupted_at < 3 * STEPS_PER_EPOCH

    resumed = run_main(data_dir, tmp_path, '--config.train_dataloader.num_workers=1')
    assert f'Resumed at step {interrupted_at}' in resumed.stderr
    ours, ref = params_of(tmp_path), params_of(reference_run)
    assert ours.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)


def test_sharded_over_4_devices_matches_1_device(data_dir, tmp_path):
    one, four = tmp_path / 'one', tmp_path / 'four'
    # lr 0.01: at the tiny config's 0.05 these steps are chaotic and amplify the different order
    # of the cross-device sums far beyond rounding.
    common = ('--config.train_cfg.max_epochs=1', '--config.test_dataloader.dataset={}',
              '--config.optim_wrapper.optimizer.lr=0.01')
    run_main(data_dir, one, *common)
    run_main(data_dir, four, *common, '--config.train_dataloader.batch_size=1',
             '--config.val_dataloader.batch_size=1', devices=4)
    loss_one = [r['loss'] for r in scalars(one) if 'loss' in r]
    loss_four = [r['loss'] for r in scalars(four) if 'loss' in r]
    val_one = [r for r in scalars(one) if 'val/acc/top1' in r]
    val_four = [r for r in scalars(four) if 'val/acc/top1' in r]
    assert val_one == val_four
    assert_trained_alike(params_of(four), params_of(one), loss_four, loss_one)


def test_load_from_and_resume_from(data_dir, reference_run, tmp_path):
    ref = params_of(reference_run)
    # load_from: weights only, step 0; with lr 0 the parameters stay the loaded ones.
    loaded = tmp_path / 'load_from'
    run_main(data_dir, loaded, f'--config.load_from={reference_run}',
             '--config.train_cfg.max_epochs=1', '--config.optim_wrapper.optimizer.lr=0.0')
    assert [r['step'] for r in scalars(loaded) if 'loss' in r][0] == 1
    assert latest_step(loaded) == STEPS_PER_EPOCH
    got = params_of(loaded)
    for k in (k for k in ref if k.startswith('params.')):
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    # resume_from: weights, optimizer and step; training continues after step 12.
    resumed = tmp_path / 'resume_from'
    proc = run_main(data_dir, resumed, f'--config.resume_from={reference_run}',
                    '--config.train_cfg.max_epochs=4')
    assert f'Resumed at step {3 * STEPS_PER_EPOCH}' in proc.stderr
    assert [r['step'] for r in scalars(resumed) if 'loss' in r][0] == 3 * STEPS_PER_EPOCH + 1
    assert latest_step(resumed) == 4 * STEPS_PER_EPOCH


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, reference_run, tmp_path):
    # Resume the finished run for one more epoch with an exploding learning rate.
    workdir = tmp_path / 'run'
    shutil.copytree(reference_run, workdir)
    proc = run_main(data_dir, workdir, '--config.train_cfg.max_epochs=4',
                    '--config.optim_wrapper.optimizer.lr=1e30',
                    '--config.optim_wrapper.clip_grad.max_norm=1e30', check=False)
    assert proc.returncode != 0
    assert 'Training diverged at step' in proc.stderr and 'Traceback' not in proc.stderr
    assert f'last good checkpoint is {workdir / "checkpoints" / str(3 * STEPS_PER_EPOCH)}' \
        in proc.stderr
    assert latest_step(workdir) == 3 * STEPS_PER_EPOCH
    params = params_of(workdir)
    assert all(np.isfinite(v).all() for v in params.values() if v.dtype.kind == 'f')


def test_unknown_config_keys_are_named(data_dir, tmp_path):
    proc = run_main(data_dir, tmp_path, '--config.optim_wrapper.optimizer.momemtum=0.5',
                    check=False)
    assert proc.returncode != 0 and 'momemtum' in proc.stderr
    bad = tmp_path / 'bad_config.py'
    bad.write_text('from action_jax.config import default_config\n\n'
                   'def get_config():\n    c = default_config()\n'
                   '    c.train_cfg.max_epoch = 3\n    return c\n')
    proc = subprocess.run([sys.executable, '-m', 'action_jax.main', f'--config={bad}',
                           f'--workdir={tmp_path / "w"}'], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'max_epoch' in proc.stderr


@pytest.mark.parametrize('average_clips', ['prob', 'score', None])
@pytest.mark.parametrize('suffix', ['.json', '.pkl'])
def test_test_mode_outputs(data_dir, reference_run, tmp_path, average_clips, suffix):
    from action_jax.evaluation.metrics import top_k_accuracy
    from action_jax.train import loop
    sys.path.insert(0, str(TINY.parent))
    import tsn_tiny
    config = tsn_tiny.get_config(str(data_dir))
    config.model.cls_head.average_clips = average_clips
    config.checkpoint = str(reference_run)
    config.out = str(tmp_path / f'results{suffix}')
    metrics = loop.test(config, str(tmp_path))
    if suffix == '.json':
        results = json.loads(pathlib.Path(config.out).read_text())
    else:
        results = pickle.loads(pathlib.Path(config.out).read_bytes())
    scores = np.array([r['pred_score'] for r in results])
    labels = np.array([r['gt_label'] for r in results])
    assert len(results) == 8  # the val split
    assert scores.shape[-1] == 8
    if average_clips == 'prob':
        # Per clip: exp, an 8-term sum, a division (~6 eps per probability); the clip mean
        # adds ~2 eps. Allow 4 times that 8 eps, for another CPU's exp.
        assert_close_norm(scores.sum(-1), np.ones(len(scores)), 32 * EPS32)
    flat = scores.reshape(len(scores), -1, 8).mean(1)
    assert metrics['acc/top1'] == pytest.approx(top_k_accuracy(flat, labels, (1,))[0])


def _tiny_train_step(dtype, lr=0.01):
    """The tiny TSN's jitted train step, its graphdef and initial state, outside the loop."""
    import functools

    import jax.numpy as jnp
    from flax import nnx

    from action_jax.train import optim
    from action_jax.models.io import build_recognizer
    from action_jax.train.step import TrainState, train_step
    sys.path.insert(0, str(TINY.parent))
    import tsn_tiny
    model_cfg = tsn_tiny.get_config().model.to_dict()
    model = build_recognizer(model_cfg, dtype=dtype)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    schedule = optim.build_schedule([], lr, 1, 1)
    tx = optim.build_optimizer(dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9)), params,
                               schedule)
    state = TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))
    step = jax.jit(functools.partial(train_step, tx=tx, schedule=schedule), static_argnums=0)
    return step, graphdef, state


def _random_batch(size: int):
    rng = np.random.default_rng(0)
    return {'imgs': rng.integers(0, 256, (size, 4, 32, 32, 3), dtype=np.uint8),
            'label': np.arange(size, dtype=np.int32) % 8}


def test_train_step_fits_a_fixed_batch():
    """The step's gradients point downhill: repeated on one batch, the loss falls to a fraction
    (a robust complement to the end-to-end run, whose 12 steps on 12 batches are noisy)."""
    step, graphdef, state = _tiny_train_step(jax.numpy.float32, lr=0.05)
    batch = _random_batch(8)
    losses = []
    for _ in range(25):
        state, metrics = step(graphdef, state, batch)
        losses.append(float(metrics['loss']))
    assert losses[-1] < 0.3 * losses[0], losses


def test_bfloat16_compute_keeps_float32_parameters():
    import jax.numpy as jnp
    step, graphdef, state = _tiny_train_step(jnp.bfloat16)
    batch = _random_batch(2)
    new_state, metrics = step(graphdef, state, batch)
    assert np.isfinite(float(metrics['loss']))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.params))
    changed = [not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params))]
    assert any(changed)
