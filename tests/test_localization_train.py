"""Localizers through main, as recognizers are trained: BMN learns and resumes bit for bit, its
test mode writes proposals; BSN's three stages (TEM -> PGM -> PEM) run through the CLIs.

The shipped synthetic configs run unchanged but for a smaller data set and schedule, in a
temporary working directory (their data and work_dirs paths are relative).
"""
import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_train import params_of, scalars  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
# bmn_synthetic.py on 64 videos (48 train, 16 val): 6 epochs of 6 steps, validating every 2.
BMN_OVERRIDES = {
    'synthetic_data.num_videos': 64,
    'train_cfg.max_epochs': 6,
    'train_cfg.val_interval': 2,
    'optim_wrapper.optimizer.lr': 0.003,
    'default_hooks.checkpoint.interval': 1,
}
STEPS_PER_EPOCH = 6
NUM_VAL = 16


def run_cli(cwd, module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    env.pop('XLA_FLAGS', None)
    proc = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f'{module} {args} failed ({proc.returncode}):\n'
                             f'{proc.stderr[-5000:]}')
    return proc


def run_main(cwd, config: str, workdir: str, *args: str, overrides=None):
    flags = [f'--config.{k}={v}' for k, v in (overrides or {}).items()]
    return run_cli(cwd, 'action_jax.main', f'--config={CONFIGS / config}',
                   f'--workdir={workdir}', *flags, *args)


def load_config(name: str, overrides):
    """A config as main sees it with `--config.KEY=VALUE` for each of `overrides`."""
    sys.path.insert(0, str(CONFIGS))
    config = __import__(name).get_config()
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        setattr(functools.reduce(getattr, parents, config), leaf, value)
    return config


@pytest.fixture(scope='module')
def bmn_run(tmp_path_factory):
    """(working directory, workdir) of a BMN training run; its data set is in the former."""
    root = tmp_path_factory.mktemp('bmn')
    run_main(root, 'bmn_synthetic.py', 'run', overrides=BMN_OVERRIDES)
    return root, root / 'run'


def test_bmn_trains_validates_and_tests(bmn_run, monkeypatch):
    root, workdir = bmn_run
    log = scalars(workdir)
    losses = [r['loss'] for r in log if 'loss' in r]
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])
    assert {'tem_loss', 'pem_reg_loss', 'pem_cls_loss', 'grad_norm', 'lr'} <= set(log[0])
    val = [r for r in log if 'val/auc' in r]
    assert [r['step'] for r in val] == [2 * STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH,
                                        6 * STEPS_PER_EPOCH]
    assert {'val/AR@1', 'val/AR@5', 'val/AR@10', 'val/AR@100'} <= set(val[0])
    # save_best='auto' keeps the best checkpoint by AUC; the test split is the val split.
    best_step = max(val, key=lambda r: r['val/auc'])['step']
    assert sorted(int(d.name) for d in (workdir / 'best').iterdir() if d.name.isdigit()) \
        == [best_step]
    test = next(r for r in log if 'test/auc' in r)
    assert test['test/auc'] == val[-1]['val/auc']
    assert test['test/best/auc'] == max(r['val/auc'] for r in val)

    # The same model untrained (main's seed), evaluated the same way.
    from flax import nnx

    from action_jax.train import loop, sharding
    from action_jax.models.io import build_recognizer
    from action_jax.train.tasks import build_task
    monkeypatch.chdir(root)
    config = load_config('bmn_synthetic', BMN_OVERRIDES)
    model = build_recognizer(config.model, seed=config.seed)
    task = build_task(model, config)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    untrained, proposals = loop.evaluate(
        task, loop.make_eval_step(), graphdef, params, rest, config.val_dataloader,
        sharding.create_mesh(), loop.build_split(config.val_dataloader.dataset, config.model))
    assert len(proposals) == NUM_VAL
    trained = {k[len('val/'):]: v for k, v in val[-1].items() if k.startswith('val/')}
    print(f'BMN, {len(losses)} logged steps: untrained {untrained}; trained {trained}')
    assert trained['auc'] > untrained['auc'] + 10
    assert trained['AR@10'] > untrained['AR@10'] + 0.1


def test_bmn_resume_is_bit_identical(bmn_run):
    root, workdir = bmn_run
    resumed = root / 'resumed'
    shutil.copytree(workdir, resumed)
    last = 6 * STEPS_PER_EPOCH
    shutil.rmtree(resumed / 'checkpoints' / str(last))  # as if stopped after epoch 5
    proc = run_main(root, 'bmn_synthetic.py', 'resumed', overrides=BMN_OVERRIDES)
    assert f'Resumed at step {last - STEPS_PER_EPOCH}' in proc.stderr
    ours, ref = params_of(resumed), params_of(workdir)
    assert ours.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)


def test_bmn_test_mode_writes_proposals(bmn_run, monkeypatch, tmp_path):
    from action_jax.localization.proposals import load_proposals_json
    from action_jax.train import loop
    root, workdir = bmn_run
    monkeypatch.chdir(root)
    config = load_config('bmn_synthetic', BMN_OVERRIDES)
    config.checkpoint = str(workdir)
    config.out = str(tmp_path / 'proposals.json')
    metrics = loop.test(config, str(tmp_path))
    test = next(r for r in scalars(workdir) if 'test/auc' in r)
    assert metrics == {k[len('test/'):]: v for k, v in test.items()
                       if k.startswith('test/') and not k.startswith('test/best/')}
    proposals = load_proposals_json(config.out)
    assert len(proposals) == NUM_VAL
    for props in proposals.values():
        assert 0 < len(props) <= config.model.post_process_top_k
        assert all(p['segment'][0] <= p['segment'][1] for p in props)


def test_deployed_test_mode_is_for_recognizers(bmn_run, monkeypatch, tmp_path):
    from action_jax.export.deployed import deployed_eval_step
    root, workdir = bmn_run
    monkeypatch.chdir(root)
    config = load_config('bmn_synthetic', BMN_OVERRIDES)
    config.checkpoint = str(workdir)
    config.onnx = str(tmp_path / 'bmn.onnx')
    with pytest.raises(ValueError, match='test recognizers'):
        deployed_eval_step(config)


def test_bsn_three_stages_through_the_clis(tmp_path):
    small = {'synthetic_data.num_videos': 32, 'train_cfg.max_epochs': 2,
             'train_cfg.val_interval': 2}
    # 1. TEM: train, then the test at the end writes a TEM result per video (the full set).
    run_main(tmp_path, 'bsn_tem_synthetic.py', 'tem', overrides=small)
    tem_results = tmp_path / 'work_dirs' / 'bsn_synthetic' / 'tem_results'
    assert len(list(tem_results.glob('*.csv'))) == 32
    header = (tem_results / 'v_synthetic00000.csv').read_text().splitlines()[0]
    assert header == 'action,start,end,tmin,tmax'
    assert not (tmp_path / 'tem' / 'best').exists()  # no metric, no best checkpoint
    # 2. PGM: proposals and BSP features of the train (24) and val (8) videos.
    for mode in ('train', 'test'):
        run_cli(tmp_path, 'action_jax.tools.bsn_proposal_generation',
                str(CONFIGS / 'bsn_pem_synthetic.py'), f'--mode={mode}')
    assert len(list((tmp_path / 'work_dirs' / 'bsn_synthetic' / 'pgm_features').glob('*.npy'))) \
        == 32
    # 3. PEM: train and validate on them, then test mode writes the proposals.
    run_main(tmp_path, 'bsn_pem_synthetic.py', 'pem', overrides=small)
    pem_log = scalars(tmp_path / 'pem')
    assert any('temporal_iou_loss' in r for r in pem_log)
    test = next(r for r in pem_log if 'test/auc' in r)
    out = tmp_path / 'proposals.json'
    proc = run_main(tmp_path, 'bsn_pem_synthetic.py', 'pem_test', '--mode=test',
                    '--config.checkpoint=pem', f'--config.out={out}')
    assert f'auc {test["test/auc"]:.4f}' in proc.stderr
    results = json.loads(out.read_text())
    assert results['version'] == 'VERSION 1.3'
    assert len(results['results']) == 8
    assert all(len(props) > 0 for props in results['results'].values())
