"""Shared test set-up: the JAX compilation cache and the MMAction2 reference fixtures."""
import os
import pathlib

import pytest

# A persistent compilation cache outside the repo makes repeated runs start warm.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                        os.path.expanduser('~/.cache/action_jax/jax_cache'))
# Model building compiles many small programs (~0.35 s each): cache them all.
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'


@pytest.fixture(scope='session', autouse=True)
def export_cache_dir(tmp_path_factory):
    """init_recognizer's onnxruntime exports (export/cpu_inference.py) go to a temporary
    directory, not ~/.cache/action_jax (subprocesses inherit it)."""
    before = os.environ.get('ACTION_JAX_CACHE')
    os.environ['ACTION_JAX_CACHE'] = str(tmp_path_factory.mktemp('action_jax_cache'))
    yield
    if before is None:
        del os.environ['ACTION_JAX_CACHE']
    else:
        os.environ['ACTION_JAX_CACHE'] = before


@pytest.fixture(scope='session')
def tiny_synthetic(tmp_path_factory) -> pathlib.Path:
    """The training tests' data set (tests/configs/tsn_tiny.py's: 24 synthetic videos of 48x40,
    16 frames, 8 classes), made once. Read it as is; copy it (shutil.copytree) to add files."""
    from action_jax.data.synthetic import make_synthetic
    out = tmp_path_factory.mktemp('tiny_synthetic')
    make_synthetic(str(out), num_videos=24, seed=0, width=48, height=40, frames=16)
    return out


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
    """MMAction2 1.2.0 reference outputs (see tests/fixtures/README.md)."""
    return FIXTURES


# grain's worker processes read absl flags, which pytest never parses.
from absl import flags  # noqa: E402

flags.FLAGS(['pytest'], known_only=True)
