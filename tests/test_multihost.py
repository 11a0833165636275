"""Several JAX processes: launch/*.sh and action_jax.launch on 127.0.0.1 with CPU devices.

2 processes × 2 CPU devices train like 1 process × 4 devices (same global batch) and test like
1 process; a SIGTERM to one process stops both after the same step with one checkpoint. The
launcher's own duties (failures, timeouts, signals, locks, GPU split) are checked with a fake
program that starts in milliseconds.
"""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import portpicker
import pytest

from action_jax import distributed, launch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_train import assert_trained_alike, params_of, scalars  # noqa: E402
from tolerances import SAME_NETWORK_REL, assert_close_norm  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO / 'tests' / 'configs' / 'tsn_tiny.py'
JOB_TIMEOUT = 300  # the launcher stops a hung job (exit 124) ...
# ... and this is the last resort should the launcher itself hang.
PROC_TIMEOUT = JOB_TIMEOUT + 60
# Per-device batch 1 on 4 devices: the global batch of 4 that tsn_tiny uses on 1 device. A
# moderate lr: tsn_tiny's 0.05 makes these few steps chaotic, so that the different order of the
# cross-device sums (a few ulps) would grow far beyond rounding.
TRAIN = ('--config.train_cfg.max_epochs=1', '--config.optim_wrapper.optimizer.lr=0.01',
         '--config.train_dataloader.batch_size=1',
         '--config.val_dataloader.batch_size=1', '--config.test_dataloader.dataset={}')
# Variables that would give a launched job a topology other than the one a test asks for.
TOPOLOGY_VARS = ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'PORT', 'NPROC', 'GPUS',
                 'DEVICES_PER_PROC', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID',
                 'JAX_LOCAL_DEVICE_IDS', 'JAX_COORDINATOR_ADDRESS', 'XLA_FLAGS', 'PY_ARGS')


def _env(timeout: int = JOB_TIMEOUT, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in TOPOLOGY_VARS and not k.startswith('SLURM_')}
    env.update(PYTHON=sys.executable, LAUNCH_TIMEOUT=str(timeout),
               PORT=str(portpicker.pick_unused_port()))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def launch_script(script: str, *args, nproc: int, devices_per_proc: int, check=True,
                  popen=False, timeout: int = JOB_TIMEOUT):
    """`bash launch/<script> args` in CPU mode: nproc processes × devices_per_proc devices."""
    cmd = ['bash', str(REPO / 'launch' / script), *map(str, args)]
    env = _env(timeout, NPROC=nproc, DEVICES_PER_PROC=devices_per_proc)
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=PROC_TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f'{script} failed ({proc.returncode}):\n{proc.stderr[-6000:]}')
    return proc


@pytest.fixture(scope='module')
def data_dir(tiny_synthetic):
    return tiny_synthetic


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
    """One epoch of tsn_tiny in 1 process × 4 devices and in 2 processes × 2 devices."""
    runs = {}
    for name, nproc, k in (('one', 1, 4), ('two', 2, 2)):
        workdir = tmp_path_factory.mktemp(name)
        proc = launch_script('dist_train.sh', f'{TINY}:{data_dir}', 4, '--workdir', workdir,
                             *TRAIN, nproc=nproc, devices_per_proc=k)
        runs[name] = workdir, proc.stderr
    return runs


def test_two_processes_train_like_one(trained):
    (one, _), (two, log) = trained['one'], trained['two']
    assert 'global batch 4 on 4 devices (2 processes)' in log
    # Only process 0 writes scalars: one line per step, not two.
    loss1 = [r['loss'] for r in scalars(one) if 'loss' in r]
    loss2 = [r['loss'] for r in scalars(two) if 'loss' in r]
    assert len(loss2) == 4
    # The gradient all-reduce sums in another order across processes.
    assert_trained_alike(params_of(two), params_of(one), loss2, loss1)
    val1 = [r for r in scalars(one) if 'val/acc/top1' in r]
    val2 = [r for r in scalars(two) if 'val/acc/top1' in r]
    assert val1 and val1 == val2


def _test_metrics(log: str) -> list[str]:
    return re.findall(r'Test metrics: (.*)', log)


def test_two_processes_test_like_one(data_dir, trained, tmp_path):
    checkpoint = trained['one'][0]
    config = f'{TINY}:{data_dir}'
    one = launch_script('dist_test.sh', config, checkpoint, 1, f'--workdir={tmp_path / "t1"}',
                        f'--config.out={tmp_path / "one.json"}', nproc=1, devices_per_proc=1)
    two = launch_script('dist_test.sh', config, checkpoint, 4, f'--workdir={tmp_path / "t2"}',
                        f'--config.out={tmp_path / "two.json"}',
                        '--config.test_dataloader.batch_size=1', nproc=2, devices_per_proc=2)
    (m1,), m2 = _test_metrics(one.stderr), _test_metrics(two.stderr)
    assert m2 == [m1, m1]  # both processes hold the gathered results
    r1 = json.loads((tmp_path / 'one.json').read_text())
    r2 = json.loads((tmp_path / 'two.json').read_text())
    assert len(r1) == len(r2) == 8
    assert [r['gt_label'] for r in r1] == [r['gt_label'] for r in r2]
    # Per-device batch 1 instead of 4: XLA may tile the convs' sums otherwise.
    assert_close_norm([r['pred_score'] for r in r2], [r['pred_score'] for r in r1],
                      SAME_NETWORK_REL)


def _children(pid: int) -> list[int]:
    with open(f'/proc/{pid}/task/{pid}/children') as f:
        return [int(c) for c in f.read().split()]


def _process_id(pid: int) -> str | None:
    with open(f'/proc/{pid}/environ', 'rb') as f:
        env = dict(kv.split(b'=', 1) for kv in f.read().split(b'\0') if b'=' in kv)
    return env.get(b'JAX_PROCESS_ID', b'').decode() or None


def test_sigterm_to_one_process_stops_both_at_one_step(data_dir, tmp_path):
    """jax.distributed's preemption sync: both processes checkpoint the same step, exit 0."""
    job = launch_script('dist_train.sh', f'{TINY}:{data_dir}', 4, '--workdir', tmp_path,
                        '--config.train_dataloader.batch_size=1',
                        '--config.train_cfg.val_interval=100',
                        '--config.test_dataloader.dataset={}', nproc=2, devices_per_proc=2,
                        popen=True, timeout=150)  # ~40 s; processes at odd steps would hang
    try:
        deadline = time.time() + 150
        log = tmp_path / 'scalars.jsonl'
        while not (log.exists() and log.read_text().strip()):  # step 1 done
            assert job.poll() is None and time.time() < deadline, job.stderr.read()[-5000:]
            time.sleep(0.1)
        second = [c for c in _children(job.pid) if _process_id(c) == '1']
        assert len(second) == 1
        os.kill(second[0], signal.SIGTERM)
        _, err = job.communicate(timeout=PROC_TIMEOUT)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, err[-5000:]
    saved = re.findall(r'Checkpoint saved at step (\d+); exiting for preemption', err)
    assert len(saved) == 2 and saved[0] == saved[1], err[-5000:]
    steps = sorted(int(d.name) for d in (tmp_path / 'checkpoints').iterdir() if d.name.isdigit())
    assert steps[-1] == int(saved[0]) < 12


# --------------------------------------------------------------------------------------------
# The launcher with a fake program.

FAKE = '''
import os, pathlib, signal, sys, time
out = pathlib.Path(os.environ['FAKE_OUT'])
rank = os.environ.get('JAX_PROCESS_ID', '0')
def on_term(signum, frame):
    (out / f'term{rank}').write_text('')
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
(out / f'ready{rank}').write_text(os.environ.get('XLA_FLAGS', ''))
action = os.environ['FAKE_' + rank]
if action.startswith('exit'):
    sys.exit(int(action[4:]))
time.sleep(float(action[5:]))  # sleep<seconds>
'''


def _fake_launch(tmp_path, *launcher_args, popen=False, **actions):
    (tmp_path / 'fake_program.py').write_text(textwrap.dedent(FAKE))
    env = _env(FAKE_OUT=tmp_path, PYTHONPATH=f'{tmp_path}:{REPO}',
               **{f'FAKE_{k[1:]}': v for k, v in actions.items()})
    cmd = [sys.executable, '-m', 'action_jax.launch', '--module', 'fake_program',
           *map(str, launcher_args)]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_launcher_failure_stops_the_others_and_propagates_status(tmp_path):
    start = time.time()
    proc = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--', 'x',
                        r0='sleep60', r1='exit3')
    assert proc.returncode == 3, proc.stderr
    assert 'process 1 exited with status 3; stopping the others' in proc.stderr
    assert (tmp_path / 'term0').exists()
    assert time.time() - start < 30
    flags = (tmp_path / 'ready0').read_text()
    assert flags == '--xla_force_host_platform_device_count=1'


def test_launcher_timeout(tmp_path):
    proc = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--timeout', 2,
                        '--grace', 1, '--', 'x', r0='sleep60', r1='sleep60')
    assert proc.returncode == launch.TIMEOUT_STATUS, proc.stderr
    assert 'timed out' in proc.stderr


def _wait_ready(tmp_path, n, proc):
    deadline = time.time() + 30
    while not all((tmp_path / f'ready{i}').exists() for i in range(n)):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)


def test_launcher_forwards_sigterm(tmp_path):
    proc = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--', 'x',
                        popen=True, r0='sleep60', r1='sleep60')
    _wait_ready(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert (tmp_path / 'term0').exists() and (tmp_path / 'term1').exists()


def test_processes_stop_when_the_launcher_is_killed(tmp_path):
    proc = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--', 'x',
                        popen=True, r0='sleep60', r1='sleep60')
    _wait_ready(tmp_path, 2, proc)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while not ((tmp_path / 'term0').exists() and (tmp_path / 'term1').exists()):
        assert time.time() < deadline, 'orphaned processes were not stopped'
        time.sleep(0.05)


def test_second_job_on_the_same_workdir_or_port_is_refused(tmp_path):
    first = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--',
                         '--workdir', tmp_path / 'w', popen=True, r0='sleep60', r1='sleep60')
    try:
        _wait_ready(tmp_path, 2, first)
        second = _fake_launch(tmp_path, '--nproc', 1, '--devices-per-proc', 1, '--',
                              f'--workdir={tmp_path / "w"}', r0='exit0')
        assert second.returncode != 0 and 'is in use by another job' in second.stderr
        # A test job only reads the checkpoints: allowed next to a training job.
        reader = _fake_launch(tmp_path, '--nproc', 1, '--devices-per-proc', 1, '--',
                              f'--workdir={tmp_path / "w"}', '--mode=test', r0='exit0')
        assert reader.returncode == 0, reader.stderr
        port = portpicker.pick_unused_port()
        with socket.socket() as s:
            s.bind(('', port))
            s.listen()
            taken = _fake_launch(tmp_path, '--nproc', 2, '--devices-per-proc', 1, '--port',
                                 port, '--', 'x', r0='exit0', r1='exit0')
        assert taken.returncode != 0 and f'port {port} is in use' in taken.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_process_environments(monkeypatch):
    for k in TOPOLOGY_VARS + ('CUDA_VISIBLE_DEVICES', 'LAUNCH_TIMEOUT'):
        monkeypatch.delenv(k, raising=False)

    def envs(*argv):
        args = launch.parse_args([*map(str, argv), '--', 'x'])
        args.port = 1234
        return launch.process_envs(args)

    # One process per machine, JAX's default: no distributed variables, the GPUS first GPUs.
    (e,) = envs('--gpus', 4)
    assert 'JAX_NUM_PROCESSES' not in e and e['CUDA_VISIBLE_DEVICES'] == '0,1,2,3'
    # One process per GPU on the second of two machines, within CUDA_VISIBLE_DEVICES.
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5,6,7')
    es = envs('--nnodes', 2, '--node-rank', 1, '--nproc', 4, '--gpus', 4,
              '--master-addr', '10.0.0.1')
    assert [e['CUDA_VISIBLE_DEVICES'] for e in es] == ['4', '5', '6', '7']
    assert [e['JAX_PROCESS_ID'] for e in es] == ['4', '5', '6', '7']
    assert {(e['JAX_NUM_PROCESSES'], e['MASTER_ADDR'], e['PORT']) for e in es} == {
        ('8', '10.0.0.1', '1234')}
    assert [e['CUDA_VISIBLE_DEVICES'] for e in envs('--nproc', 2)] == ['4,5', '6,7']
    with pytest.raises(SystemExit, match='do not split evenly'):
        envs('--nproc', 3)
    # CPU mode: GPUS devices in all = NPROC × DEVICES_PER_PROC.
    es = envs('--gpus', 4, '--devices-per-proc', 2)
    assert len(es) == 2 and all(e['JAX_PLATFORMS'] == 'cpu' for e in es)
    assert es[1]['XLA_FLAGS'] == '--xla_force_host_platform_device_count=2'
    with pytest.raises(SystemExit, match='is not NPROC'):
        envs('--gpus', 4, '--nproc', 3, '--devices-per-proc', 2)


def test_slurm_local_device_ids():
    f = distributed.slurm_local_device_ids
    node = dict(CUDA_VISIBLE_DEVICES='0,1,2,3,4,5,6,7', SLURM_STEP_GPUS='0,1,2,3,4,5,6,7')
    # One task per node drives all its GPUs (JAX alone would give it GPU 0 only).
    assert f(dict(node, SLURM_STEP_TASKS_PER_NODE='1(x4)', SLURM_NODEID='3')) == []
    # Several tasks per node split its GPUs.
    assert f(dict(node, SLURM_STEP_TASKS_PER_NODE='8(x2)', SLURM_NODEID='1',
                  SLURM_LOCALID='5')) == [5]
    assert f(dict(node, SLURM_STEP_TASKS_PER_NODE='2', SLURM_LOCALID='1')) == [4, 5, 6, 7]
    # GPUs bound per task by srun (--gpus-per-task): each task uses what it sees.
    assert f(dict(SLURM_STEP_TASKS_PER_NODE='8', SLURM_LOCALID='5', CUDA_VISIBLE_DEVICES='5',
                  SLURM_STEP_GPUS='0,1,2,3,4,5,6,7')) == []
    assert f(dict(node, SLURM_STEP_TASKS_PER_NODE='8', JAX_LOCAL_DEVICE_IDS='0')) is None


def test_scripts_pass_mmaction2_arguments(tmp_path):
    """dist_*.sh/slurm_*.sh argument handling, with a fake interpreter and a fake srun."""
    echo = tmp_path / 'echo_args'
    echo.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)
    (tmp_path / 'srun').symlink_to(echo)
    env = _env(PYTHON=echo, PATH=f'{tmp_path}:{os.environ["PATH"]}', GPUS=16,
               PY_ARGS='--config.seed=1')

    def run(script, *args):
        proc = subprocess.run(['bash', str(REPO / 'launch' / script), *args], env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()

    out = run('dist_train.sh', 'configs/tsn_k400.py', '8', '--config.train_cfg.max_epochs=2')
    assert out[:3] == ['-m', 'action_jax.launch', '--gpus']
    assert out[-4:] == ['--config=configs/tsn_k400.py', '--config.train_cfg.max_epochs=2',
                        '--config.seed=1', '--workdir=work_dirs/tsn_k400']
    out = run('dist_test.sh', 'configs/tsn_k400.py', 'ckpt', '8', '--work-dir', 'w')
    assert out[-5:] == ['--config=configs/tsn_k400.py', '--mode=test',
                        '--config.checkpoint=ckpt', '--workdir=w', '--config.seed=1']
    out = run('slurm_train.sh', 'part', 'job', 'configs/tsn_k400.py', '--workdir', 'w')
    assert out[:8] == ['-p', 'part', '--job-name=job', '--nodes=2', '--gres=gpu:8',
                       '--ntasks=2', '--ntasks-per-node=1', '--cpus-per-task=40']
    assert out[-2:] == ['--workdir=w', '--config.seed=1']
    env['TASKS_PER_NODE'] = '8'
    out = run('slurm_test.sh', 'part', 'job', 'configs/tsn_k400.py', 'ckpt')
    assert out[3:8] == ['--nodes=2', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
                        '--cpus-per-task=5']
    assert out[-1] == '--workdir=work_dirs/tsn_k400/test'
