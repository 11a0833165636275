"""A wheel built from this checkout installs into a fresh virtualenv and works from any
directory: console command, shipped configs, the K400 label map, decord optional.

The wheel is installed without its dependencies, which the new environment takes from this
one through a .pth file placed after its own site-packages: seconds and no network, where
resolving and downloading them would take minutes; that the declared requirements resolve is
what `pip install --dry-run '.[cuda12]'` checks (README, Install).
"""
import logging
import os
import subprocess
import sys
import sysconfig
import venv

import numpy as np
import pytest

from action_jax import optional
from action_jax.data import decoding
from action_jax.data.synthetic import write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(bin directory of a fresh venv holding the wheel, an empty working directory)."""
    root = tmp_path_factory.mktemp('install')
    # Without PYTHONPATH: pip would take the checkout on it for an installed action_jax.
    env = clean_env()
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                    '--no-build-isolation', '-w', str(root / 'dist'), ROOT], check=True, env=env)
    [wheel] = (root / 'dist').glob('action_jax-*.whl')
    venv.create(root / 'venv', with_pip=False)
    python = root / 'venv' / 'bin' / 'python'
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q',
                    '--no-deps', str(wheel)], check=True, env=env)
    purelib = subprocess.check_output(
        [python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'], text=True)
    with open(os.path.join(purelib.strip(), 'zz_dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_path('purelib') + '\n')
    work = root / 'elsewhere'
    work.mkdir()
    return python.parent, work


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


def run(installed, *command):
    bin_dir, work = installed
    env = clean_env()
    env.update(JAX_PLATFORMS='cpu', PATH=f'{bin_dir}{os.pathsep}{env["PATH"]}')
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                          timeout=120)


def test_package_configs_and_label_map_come_from_the_install(installed):
    bin_dir, _ = installed
    result = run(installed, 'python', '-c', (
        'import action_jax, action_jax.apis as a, action_jax.label_map as m;'
        'c = a.load_config("configs/tsn_k400.py");'
        'print(action_jax.__file__, len(m.load_k400_labels()), c.model.cls_head.num_classes)'))
    assert result.returncode == 0, result.stderr
    package_file, labels, classes = result.stdout.split()
    assert package_file.startswith(str(bin_dir.parent))
    assert (labels, classes) == ('400', '400')


def test_console_command_lists_and_runs_the_programs(installed):
    listing = run(installed, 'action-jax', '--help')
    assert listing.returncode == 0
    for command in ('train', 'test', 'demo', 'export', 'convert', 'make-synthetic'):
        assert f'\n  {command} ' in listing.stdout
    for command in ('train', 'demo', 'export', 'convert', 'make-synthetic'):
        result = run(installed, 'action-jax', command, '--help')
        assert '--config' in result.stdout or '--out' in result.stdout, (command, result.stderr)
        assert result.returncode == 0 and not result.stderr, (command, result.stderr)
    # configs/ resolves to the installed copy: the run gets as far as the checkpoint.
    result = run(installed, 'action-jax', 'test', '--config', 'configs/tsn_synthetic.py',
                 '--workdir', 'w', '--config.checkpoint=missing')
    assert (result.returncode, result.stderr) == (
        2, "error: --config.checkpoint: 'missing' does not exist\n")


def test_decord_init_without_decord_decodes_the_same_frames(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (24, 32, 48, 3), dtype=np.uint8)
    path = str(tmp_path / 'clip.mp4')
    write_video(path, frames, 25, gop_size=8)
    pipeline = [decoding.DecordInit(), decoding.DecordDecode()]
    inds = np.array([3, 9, 10, 22])

    def decode():
        results = {'filename': path, 'frame_inds': inds}
        for transform in pipeline:
            results = transform(results)
        return results['imgs']

    with_decord = decode()
    monkeypatch.setattr(decoding, 'decord', None)
    optional.note_missing.cache_clear()
    with caplog.at_level(logging.WARNING):
        first, _ = decoding.DecordInit(), decoding.DecordInit()
    pipeline = [first, decoding.DecordDecode()]
    without = decode()
    np.testing.assert_array_equal(np.stack(without), np.stack(with_decord))
    said = [r for r in caplog.records if 'decord is not installed' in r.getMessage()]
    assert len(said) == 1 and 'PyAV' in said[0].getMessage()
