"""A newcomer's first mistakes end in one line on stderr naming the culprit, not a traceback."""
import os
import subprocess
import sys

import pytest

from action_jax import apis, user_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD_KEY = 'c.train_cfg.max_epoch = 3'
BAD_TYPE = "c.train_cfg.max_epochs = 'three'"


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
    env.pop('ACTION_JAX_TRACEBACK', None)
    return subprocess.run([sys.executable, '-m', 'action_jax.cli', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def bad_configs(tmp_path_factory):
    """Config files with, on line 4, a misspelt key and a value of the wrong type."""
    root = tmp_path_factory.mktemp('configs')
    paths = {}
    for name, line in (('bad_key', BAD_KEY), ('bad_type', BAD_TYPE)):
        paths[name] = root / f'{name}.py'
        paths[name].write_text('from action_jax.config import default_config\n'
                               'def get_config():\n'
                               '    c = default_config()\n'
                               f'    {line}\n'
                               '    return c\n')
    return paths


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_config_file_suggests_the_closest():
    result = run_cli('train', '--config', 'configs/tsn_synthetc.py', '--workdir', 'w')
    assert_one_line_error(result, "'configs/tsn_synthetc.py' does not exist",
                          "did you mean 'configs/tsn_synthetic.py'")


def test_misspelt_key_in_a_file_names_file_line_and_suggestion(bad_configs):
    result = run_cli('train', '--config', str(bad_configs['bad_key']), '--workdir', 'w')
    assert_one_line_error(result, f"{bad_configs['bad_key']}, line 4",
                          "unknown config key 'max_epoch'", "did you mean 'max_epochs'")


def test_wrong_type_in_a_file(bad_configs):
    result = run_cli('train', '--config', str(bad_configs['bad_type']), '--workdir', 'w')
    assert_one_line_error(result, f"{bad_configs['bad_type']}, line 4",
                          "config key 'max_epochs' takes int, got str")


@pytest.mark.parametrize('override,fragments', [
    ('--config.train_cfg.max_epoch=3',
     ('--config.train_cfg.max_epoch', "unknown config key 'max_epoch'", "'max_epochs'")),
    ('--config.train_cfg.max_epochs=three', ('--config.train_cfg.max_epochs=three', 'int')),
])
def test_bad_override(override, fragments):
    result = run_cli('train', '--config', 'configs/tsn_synthetic.py', '--workdir', 'w', override)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_help_succeeds(flag):
    # absl prints its help and exits with status 1; asking for help is no failure.
    result = run_cli('train', flag)
    assert (result.returncode, result.stderr) == (0, '')
    assert '--workdir' in result.stdout


def test_missing_workdir():
    assert_one_line_error(run_cli('train', '--config', 'configs/tsn_synthetic.py'),
                          '--workdir is required')


def test_missing_checkpoint(tmp_path):
    result = run_cli('test', '--config', 'configs/tsn_synthetic.py', '--workdir',
                     str(tmp_path / 'w'), f'--config.checkpoint={tmp_path}/nothing_here')
    assert_one_line_error(result, f"--config.checkpoint: '{tmp_path}/nothing_here' does not exist")


def test_unknown_command_suggests_the_closest():
    assert_one_line_error(run_cli('trian'), "unknown command 'trian'", "did you mean 'train'")


def test_gpu_asked_for_where_jax_has_none(capsys):
    # CPU-only JAX (a CPU jaxlib on a GPU node): 'cuda:0' does not exist. With GPUs, one past
    # the last does not either.
    import jax
    gpus = [d for d in jax.devices() if d.platform == 'gpu']
    device = f'cuda:{len(gpus)}'
    with pytest.raises(SystemExit) as exit_info, user_errors.exit_on_user_error():
        apis._resolve_device(device)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: no JAX device '{device}'") and '\n' not in message
    assert f'{jax.devices()[0].platform}:0' in message
    assert ("action_jax[cuda12]" in message) == (not gpus)


def test_gpu_platform_asked_for_where_jax_sees_none(tmp_path):
    # JAX_PLATFORMS=cuda where JAX sees no NVIDIA GPU (made so on any machine): JAX itself
    # fails with a bare AssertionError while starting its backends.
    hide_gpus = ('import runpy, sys; from jax._src import hardware_utils; '
                 'hardware_utils.has_visible_nvidia_gpu = lambda: False; '
                 "sys.argv[0] = 'action-jax'; runpy.run_module('action_jax.cli', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cuda')
    env.pop('ACTION_JAX_TRACEBACK', None)
    result = subprocess.run(
        [sys.executable, '-c', hide_gpus, 'train', '--config', 'configs/tsn_synthetic.py',
         '--workdir', str(tmp_path / 'w')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "JAX started none of JAX_PLATFORMS='cuda'", 'action_jax[cuda12]')


def test_config_file_runs_once(tmp_path):
    """parse_flags loads the file for its error messages; config_flags reuses that config."""
    from action_jax.tools import load_config_arg
    counter = tmp_path / 'runs.txt'
    path = tmp_path / 'counted.py'
    path.write_text('from action_jax.config import default_config\n'
                    'def get_config():\n'
                    f'    open({str(counter)!r}, "a").write("x")\n'
                    '    return default_config()\n')
    config = load_config_arg(str(path), ['--config.seed=3'])
    assert config.seed == 3 and config.is_locked
    assert counter.read_text() == 'x'
