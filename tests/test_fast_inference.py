"""The model init_recognizer returns compiles itself (models/compiled.py): one trace per
input shape, the eager model's results, weight updates and training-mode state changes seen,
and plain tracing (jit, export) inside other programs."""
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from action_jax.apis import init_recognizer, predict_scores
from action_jax.export import cache
from action_jax.export.verify import RELATIVE_TOLERANCE
from action_jax.models.compiled import is_compiled

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO / 'tests' / 'configs' / 'fixture_recognizer.py'}:tsn_r18s"
CHECKPOINT = str(REPO / 'tests' / 'fixtures' / 'tsn_r18s.pth')
SIZE = 64
# Jitted and eager runs differ only by XLA's fusion of elementwise ops (a few float32
# rounding steps per layer, ~20 layers, then sums over channels in another order):
# 1e-5 of the scores' scale bounds that with a wide margin.
RTOL = 1e-5


def clips(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, frames, SIZE, SIZE, 3), np.uint8)


def normalised(imgs: np.ndarray, model) -> np.ndarray:
    return np.asarray(model.data_preprocessor(imgs))


def eager(model, name: str, *args):
    """The method as the plain (uncompiled) model class runs it, op by op."""
    return getattr(type(model).__mro__[1], name)(model, *args)


def assert_close(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


class TraceCounter:
    """Counts Python executions of the backbone: one per trace when compiled."""

    def __init__(self, monkeypatch, model):
        self.count = 0
        backbone_call = type(model.backbone).__call__

        def counting(backbone, *args, **kwargs):
            self.count += 1
            return backbone_call(backbone, *args, **kwargs)
        monkeypatch.setattr(type(model.backbone), '__call__', counting)


@pytest.fixture
def model():
    # On XLA: the onnxruntime route of 2D models on CPU is tests/test_cpu_inference.py's.
    return init_recognizer(CONFIG, CHECKPOINT, device='cpu', runtime='xla')


def test_traces_once_per_shape(model, monkeypatch):
    assert is_compiled(model)
    # Programs are cached by the model's structure and config (equal by value), so another
    # test's model of this config may have compiled these shapes already.
    jax.clear_caches()
    counter = TraceCounter(monkeypatch, model)
    batch3, batch5 = {'imgs': clips(3)}, {'imgs': clips(5, seed=1)}
    first = model.predict(batch3)
    assert counter.count == 1
    again = model.predict({'imgs': clips(3, seed=2)})
    assert counter.count == 1  # same shape: the compiled program again
    assert not np.array_equal(np.asarray(first), np.asarray(again))
    model.predict(batch5)
    assert counter.count == 2  # a new shape compiles once more
    model.predict(batch5)
    model.predict(batch3)
    assert counter.count == 2
    x = normalised(batch3['imgs'], model)
    model(x)
    model(x)
    assert counter.count == 3  # __call__ is its own program, compiled once


def test_same_results_as_eager(model):
    imgs = clips(3)
    x = normalised(imgs, model)
    assert_close(model.predict({'imgs': imgs}), eager(model, 'predict', {'imgs': imgs}))
    assert_close(model(x), eager(model, '__call__', x))
    assert_close(model.predict_scores(x), eager(model, 'predict_scores', x))
    assert_close(predict_scores(model, imgs[0]), eager(model, 'predict', {'imgs': imgs})[0])


def test_sees_weight_updates(model):
    x = normalised(clips(3), model)
    before = np.asarray(model(x))
    bias = nnx.state(model, nnx.Param)['cls_head']['fc_cls']['bias']
    nnx.update(model, jax.tree.map(lambda b: b + 1.0, nnx.State({'cls_head': {'fc_cls': {
        'bias': bias}}})))
    # The head's raw scores are the frames' mean of fc outputs: a bias shifted by 1 shifts
    # every score by exactly 1 (up to the rounding of one float32 add).
    after = np.asarray(model(x))
    assert np.abs(after - (before + 1.0)).max() <= 4 * np.finfo(np.float32).eps * (
        np.abs(before).max() + 1.0)
    assert_close(after, eager(model, '__call__', x))


def test_training_mode_writes_back_state():
    """Train mode: BatchNorm running statistics and the dropout rng count change on each
    call, as they do eagerly (the cloned rng state draws the same dropout mask)."""
    compiled = init_recognizer(CONFIG, CHECKPOINT, device='cpu', fuse=False, runtime='xla')
    compiled.train()
    plain = nnx.clone(compiled)
    initial = nnx.state(plain, nnx.Not(nnx.Param))
    x = normalised(clips(3), compiled)
    for _ in range(2):
        assert_close(compiled(x), eager(plain, '__call__', x))
    changed = nnx.state(compiled, nnx.Not(nnx.Param))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(changed),
                                                         jax.tree.leaves(initial)))
    for a, b in zip(jax.tree.leaves(changed), jax.tree.leaves(nnx.state(plain, nnx.Not(
            nnx.Param)))):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert_close(a, b)


def test_inlines_inside_other_traces(model, monkeypatch):
    """Under jit (as export and window scoring use it) the methods trace as plain code."""
    x = normalised(clips(3), model)
    graphdef, state = nnx.split(model)
    counter = TraceCounter(monkeypatch, model)

    @jax.jit
    def run(state, x):
        return nnx.merge(graphdef, state).predict_scores(x)

    scores = run(state, x)
    assert counter.count == 1  # traced once, as plain code
    assert_close(scores, eager(model, 'predict_scores', x))
    assert 'name=_apply' not in str(jax.make_jaxpr(run)(state, x))


def test_onnx_export_cache(model, tmp_path, monkeypatch):
    """cached_onnx exports once per weights, reuses the file, and matches the JAX model."""
    monkeypatch.setenv('ACTION_JAX_CACHE', str(tmp_path))
    exports = []
    export_onnx = cache.export_onnx
    monkeypatch.setattr(cache, 'export_onnx', lambda *a, **k: exports.append(a) or
                        export_onnx(*a, **k))
    shape = (3, SIZE, SIZE)
    runner = cache.cached_onnx_model(model, shape)
    assert cache.cached_onnx(model, shape) == runner.path
    assert len(exports) == 1
    x = normalised(clips(3), model)
    assert np.abs(runner(x) - np.asarray(model.predict_scores(x))).max() <= \
        RELATIVE_TOLERANCE * np.abs(np.asarray(model.predict_scores(x))).max()
    bias = model.cls_head.fc_cls.bias
    bias[...] = bias[...] + 1.0
    assert cache.cached_onnx(model, shape) != runner.path  # new weights, new file
    assert len(exports) == 2
    assert sorted(p.name for p in (tmp_path / 'onnx').iterdir()) == sorted(
        [pathlib.Path(runner.path).name, pathlib.Path(cache.cached_onnx(model, shape)).name])
