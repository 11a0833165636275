"""Runs survive faults and bad input: divergence, bad labels and lists, slow or odd downloads,
two runs on one workdir, a killed run's loader workers, and a clean console and log."""
import contextlib
import http.server
import json
import logging
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from action_jax.apis import DownloadError, downloaded
from action_jax.data.datasets import ListFileError
from action_jax.train import loop

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_train import REPO, _cmd, _env, scalars  # noqa: E402

sys.path.insert(0, str(REPO / 'tests' / 'configs'))
import tsn_tiny  # noqa: E402


@pytest.fixture(scope='module')
def data_dir(tiny_synthetic, tmp_path_factory):
    """The tiny synthetic set, plus lists with a bad label, a bad byte and an unreadable video."""
    out = shutil.copytree(tiny_synthetic, tmp_path_factory.mktemp('synthetic'), dirs_exist_ok=True)
    for split in ('train', 'val'):
        lines = (out / f'synthetic_{split}_list_videos.txt').read_text().splitlines()
        lines[2] = lines[2].rsplit(' ', 1)[0] + ' 99'  # the tiny TSN has 8 classes
        (out / f'bad_label_{split}.txt').write_text('\n'.join(lines) + '\n')
    (out / 'videos_train' / 'garbage.mp4').write_bytes(b'not a video\n' * 100)
    (out / 'with_garbage_train.txt').write_text(
        (out / 'synthetic_train_list_videos.txt').read_text() + 'garbage.mp4 0\n')
    return out


def tiny_config(data_dir, **changes):
    config = tsn_tiny.get_config(str(data_dir))
    for dotted, value in changes.items():
        *path, key = dotted.split('__')
        node = config
        for name in path:
            node = node[name]
        node[key] = value
    return config


def saved_float_arrays(step_dir: pathlib.Path) -> dict[str, np.ndarray]:
    """Every float array of a training checkpoint: parameters, statistics, optimizer state."""
    import jax
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(step_dir / 'state')
    return {jax.tree_util.keystr(path): np.asarray(a)
            for path, a in jax.tree_util.tree_leaves_with_path(tree)
            if jax.numpy.issubdtype(getattr(a, 'dtype', np.int32), jax.numpy.floating)}


# --------------------------------------------------------------------------------------------
# 1. Divergence: nothing non-finite is saved, and the error names the good checkpoint.

def test_divergence_saves_nothing_non_finite_and_names_the_good_checkpoint(data_dir, tmp_path):
    # One step per epoch (16 videos, batch 16), a checkpoint every step. The learning rate
    # jumps to infinity at step 2: its loss (of step 1's parameters) and gradients are finite,
    # the parameters it writes are not, and step 2 is a checkpoint step.
    config = tiny_config(data_dir, train_dataloader__batch_size=16,
                         param_scheduler=[dict(type='MultiStepLR', begin=0, end=3, by_epoch=True,
                                               milestones=[1], gamma=float('inf'))])
    with pytest.raises(loop.DivergedError, match='at step 2') as error:
        loop.train_and_evaluate(config, str(tmp_path))
    good = re.search(r'last good checkpoint is (\S+):', str(error.value))
    assert good, str(error.value)
    assert pathlib.Path(good.group(1)).name == '1' and pathlib.Path(good.group(1)).is_dir()
    steps = sorted(p for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
    assert [p.name for p in steps] == ['1']
    for step_dir in steps:
        arrays = saved_float_arrays(step_dir)
        assert any('opt_state' in name for name in arrays)
        for name, a in arrays.items():
            assert np.isfinite(a).all(), (step_dir.name, name)


# --------------------------------------------------------------------------------------------
# 2 and 6. Labels beyond the head's classes, and bad lists, stop the run before it starts.

@pytest.mark.parametrize('split', ['train', 'val'])
def test_out_of_range_labels_are_named_before_training(data_dir, tmp_path, split):
    bad = data_dir / f'bad_label_{split}.txt'
    config = tiny_config(data_dir, **{f'{split}_dataloader__dataset__ann_file': str(bad)})
    classes = config.model.cls_head.num_classes  # the head's: the dataset config gives none
    assert 'num_classes' not in config[f'{split}_dataloader'].dataset
    with pytest.raises(ListFileError, match=rf'{re.escape(str(bad))}, line 3: label 99 is out of '
                                         rf'range for num_classes={classes}'):
        loop.train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / 'checkpoints').exists()  # stopped before anything was built


def test_out_of_range_labels_are_named_in_test_mode(data_dir, tmp_path):
    bad = data_dir / 'bad_label_val.txt'
    config = tiny_config(data_dir, test_dataloader__dataset__ann_file=str(bad),
                         checkpoint=str(tmp_path / 'not-read'))
    with pytest.raises(ListFileError, match=rf'{re.escape(str(bad))}, line 3: label 99'):
        loop.test(config, str(tmp_path))


def test_invalid_utf8_names_file_and_line(data_dir, tmp_path):
    bad = tmp_path / 'latin1.txt'
    bad.write_bytes(b'a.mp4 0\nb\xe9\xe8.mp4 1\n')
    config = tiny_config(data_dir, test_dataloader__dataset__ann_file=str(bad))
    with pytest.raises(ListFileError, match=rf'{re.escape(str(bad))}, line 2: invalid UTF-8'):
        loop.train_and_evaluate(config, str(tmp_path / 'run'))


# --------------------------------------------------------------------------------------------
# 3. Downloads end in DownloadError within their time limit.

class _DripHandler(http.server.BaseHTTPRequestHandler):
    """/drip.mp4: 1000 bytes announced, one sent every 0.5 s; anything else: 404."""

    def do_GET(self):
        if self.path != '/drip.mp4':
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', '1000')
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # the client gives up
            for _ in range(1000):
                self.wfile.write(b'\0')
                self.wfile.flush()
                time.sleep(0.5)

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def drip_server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _DripHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize('path', ['/drip.mp4', '/clip.' + 'x' * 300])
def test_download_errors_within_the_timeout(drip_server, path):
    timeout = 3.0
    start = time.monotonic()
    with pytest.raises(DownloadError, match='timed out after 3.0 s|HTTP 404'):
        with downloaded(drip_server + path, timeout=timeout):
            pass
    # The margin covers the connection and thread scheduling on a loaded machine.
    assert time.monotonic() - start < timeout + 1.5


# --------------------------------------------------------------------------------------------
# 4, 5 and 6 through `python -m action_jax.main` with two loader workers: a second run on the
# same workdir, kill -9, then a resumed run to the end.

WORKERS = ('--config.train_dataloader.num_workers=2',
           '--config.train_dataloader.dataset.ann_file={data}/with_garbage_train.txt',
           '--config.default_hooks.checkpoint.interval=2', '--config.train_cfg.max_epochs=3')


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _latest_step(workdir) -> int:
    ckpts = pathlib.Path(workdir) / 'checkpoints'
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.is_dir() else []
    return max(steps, default=0)


def _logged_steps(workdir) -> list[int]:
    if not (pathlib.Path(workdir) / 'scalars.jsonl').exists():
        return []
    return [r['step'] for r in scalars(workdir) if 'loss' in r]


@pytest.fixture(scope='module')
def killed_and_resumed(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp('killed')
    overrides = [o.format(data=data_dir) for o in WORKERS]
    first = subprocess.Popen(_cmd(data_dir, workdir, *overrides), env=_env(), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = {'pid': first.pid}
    try:
        lock = workdir / '.lock'
        deadline = time.time() + 300
        while not (lock.exists() and f'pid {first.pid}' in lock.read_text()):
            assert first.poll() is None and time.time() < deadline, 'first run did not start'
            time.sleep(0.1)
        record['second'] = subprocess.run(_cmd(data_dir, workdir, *overrides), env=_env(),
                                          cwd=REPO, capture_output=True, text=True, timeout=300)
        # Kill once the run has logged steps after its checkpoint of step 8 (every 2 epochs
        # of 4 steps), its workers running.
        while not (_latest_step(workdir) == 8 and max(_logged_steps(workdir), default=0) > 8):
            assert first.poll() is None and time.time() < deadline, 'first run did not train'
            time.sleep(0.05)
        record['children'] = _descendants(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait()
        record['logged_before'] = _logged_steps(workdir)
        record['checkpoint_before'] = _latest_step(workdir)
        alive_until = time.time() + 5
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                  for p in record['children']) and time.time() < alive_until:
            time.sleep(0.1)
        record['survivors'] = [p for p in record['children']
                               if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for p in record.get('survivors', []):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    record['resumed'] = subprocess.run(_cmd(data_dir, workdir, *overrides), env=_env(),
                                       cwd=REPO, capture_output=True, text=True, timeout=600)
    record['workdir'] = workdir
    return record


def test_second_run_on_a_workdir_in_use_stops_naming_the_first(killed_and_resumed):
    second = killed_and_resumed['second']
    assert second.returncode != 0
    message = second.stderr.strip().splitlines()
    assert len(message) == 1, second.stderr[-3000:]
    assert f'pid {killed_and_resumed["pid"]} on host' in message[0]
    assert 'is in use' in message[0]


def test_kill_9_leaves_no_loader_worker(killed_and_resumed):
    assert len(killed_and_resumed['children']) >= 2  # the two workers (and a resource tracker)
    assert not killed_and_resumed['survivors'], [
        p.cmdline() for p in killed_and_resumed['survivors']]


def test_resumed_run_is_clean_and_logs_once_per_step(killed_and_resumed):
    resumed, workdir = killed_and_resumed['resumed'], killed_and_resumed['workdir']
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    restored = killed_and_resumed['checkpoint_before']
    assert f'Resumed at step {restored}' in resumed.stderr
    # The killed run had logged steps after its checkpoint; they are logged once, not twice.
    assert max(killed_and_resumed['logged_before']) > restored
    assert _logged_steps(workdir) == list(range(1, 13))
    assert 'leaked shared_memory' not in resumed.stderr
    assert 'Traceback' not in resumed.stderr
    assert 'NaN or Inf' not in resumed.stderr  # tensorboardX on the unknown first clips/s
    # The unreadable video, read in a worker process, is named in the log files (of both
    # runs: 48 samples drawn from 17 meet it at least twice), the number skipped on the console.
    log = ''.join(p.read_text() for p in workdir.glob('log.*.INFO.*'))
    assert re.search(r'Skipped unreadable sample \S*garbage.mp4', log)
    assert re.search(r'step \d+/12 .* skipped \d+ ', resumed.stderr)
    assert 'training samples could not be decoded' in resumed.stderr


def test_event_file_has_scalars_clips_and_hparams(killed_and_resumed):
    from tensorboard.backend.event_processing import event_accumulator
    events = event_accumulator.EventAccumulator(str(killed_and_resumed['workdir']),
                                                size_guidance={'images': 0})
    events.Reload()
    tags = events.Tags()
    assert 'loss' in tags['scalars'] and 'val/acc/top1' in tags['scalars']
    assert 'train/clips' in tags['images']
    image = events.Images('train/clips')[0]
    assert image.width > 0 and image.height > 0
    assert '_hparams_/session_start_info' in tags['tensors'] or any(
        'hparams' in t for t in events.summary_metadata)


def test_sigterm_during_start_up_is_reported(data_dir, tmp_path):
    proc = subprocess.Popen(_cmd(data_dir, tmp_path), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # importing JAX, or setting up: long before the first step
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != -signal.SIGTERM, err[-3000:]
    assert 'SIGTERM received' in err


def test_sigterm_inside_a_callback_during_start_up_still_exits():
    # A signal handler runs wherever the main thread is; inside a gc callback (JAX installs
    # one, and collections are frequent while it is imported) a raised exception is printed as
    # ignored and the run went on.
    code = ('import gc, os, signal, sys, time\n'
            "sys.argv = ['action_jax.main']\n"
            'import action_jax.main\n'
            'sent = []\n'
            'def kill_once(phase, info):\n'
            '    if not sent:\n'
            '        sent.append(1)\n'
            '        os.kill(os.getpid(), signal.SIGTERM)\n'
            'gc.callbacks.append(kill_once)\n'
            'gc.collect()\n'
            'time.sleep(5)\n'
            "print('still running')\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (1, ''), proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        'action_jax.main: SIGTERM received before training started (or in test mode): '
        'exiting, nothing to save.']


def test_scalar_log_does_not_import_tensorflow(tmp_path):
    code = ('import sys\nfrom action_jax.train.scalar_log import ScalarLog\n'
            f'log = ScalarLog({str(tmp_path)!r})\nlog.write(1, {{"loss": 1.0}})\n'
            'log.hparams({"optim": {"lr": 0.1}})\nlog.close()\n'
            'assert "tensorflow" not in sys.modules, "tensorflow imported"\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob('events.out.tfevents.*'))


def test_scalar_log_renames_tags_quietly(tmp_path, caplog):
    """AR@1 is not a TensorBoard tag: renamed as tensorboardX would, without its log line per
    value; scalars.jsonl keeps the metric's own name and the training record's epoch."""
    from action_jax.train.scalar_log import ScalarLog
    log = ScalarLog(str(tmp_path))
    with caplog.at_level(logging.INFO):
        log.write(4, {'val/AR@1': 0.5})
        log.write(5, {'loss': 1.0}, epoch=2)
    log.close()
    assert not [r for r in caplog.records if 'illegal' in r.getMessage()]
    (events,) = tmp_path.glob('events.out.tfevents.*')
    assert b'val/AR_1' in events.read_bytes()
    records = [json.loads(line) for line in (tmp_path / 'scalars.jsonl').read_text().splitlines()]
    assert [r.get('epoch') for r in records] == [None, 2]
    assert records[0]['val/AR@1'] == 0.5
