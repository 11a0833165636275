"""init_recognizer on CPU runs a 2D recognizer's backbone on onnxruntime
(export/cpu_inference.py): the XLA model's results, one export per input shape, chunks of
max_testing_views, XLA again once the model changes or inside a trace; and the XLA:CPU
compiler options (xla_options.py)."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from action_jax import xla_options
from action_jax.apis import init_recognizer, load_config
from action_jax.export import cpu_inference, onnx
from tolerances import NETWORK_REL, assert_close_norm

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_CONFIG = REPO / 'tests' / 'configs' / 'fixture_recognizer.py'
SIZE = 64


def recognizer(name: str, runtime: str = 'auto', max_testing_views=None):
    config = load_config(f'{FIXTURE_CONFIG}:{name}')
    config.model.test_cfg = dict(max_testing_views=max_testing_views)
    return init_recognizer(config, str(REPO / 'tests' / 'fixtures' / f'{name}.pth'),
                           device='cpu', runtime=runtime)


def clips(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, frames, SIZE, SIZE, 3), np.uint8)


@pytest.fixture(autouse=True)
def export_cache(tmp_path, monkeypatch):
    """A fresh export cache, and the list of backbone exports written into it."""
    monkeypatch.setenv('ACTION_JAX_CACHE', str(tmp_path))
    written = []
    save_onnx = cpu_inference.save_onnx
    monkeypatch.setattr(cpu_inference, 'save_onnx', lambda fn, shape, out, **kw: (
        written.append(tuple(shape)), save_onnx(fn, shape, out, **kw))[1])
    return written


class SessionCalls:
    """The batch sizes onnxruntime sessions are run on."""

    def __init__(self, monkeypatch):
        self.batches = []
        call = cpu_inference.OnnxModel.__call__
        monkeypatch.setattr(cpu_inference.OnnxModel, '__call__', lambda session, x: (
            self.batches.append(len(x)), call(session, x))[1])


def test_same_results_as_xla_and_one_export_per_shape(export_cache, monkeypatch):
    """Every method equals the XLA model's within the tolerance of two implementations of
    one network (NETWORK_REL); each frame shape is exported once, then reused."""
    ort, xla = recognizer('tsn_r18s'), recognizer('tsn_r18s', runtime='xla')
    calls = SessionCalls(monkeypatch)
    batch = {'imgs': clips(3)}
    x = ort.data_preprocessor(batch['imgs'])
    for method, arg in (('predict', batch), ('predict_scores', x), ('__call__', x),
                        ('pooled_features', batch)):
        assert_close_norm(getattr(ort, method)(arg), getattr(xla, method)(arg), NETWORK_REL)
    assert calls.batches == [3, 3, 3, 3]  # all four ran the backbone on onnxruntime
    assert export_cache == [(onnx.BATCH_DIM, SIZE, SIZE, 3)]
    ort.predict({'imgs': clips(5, seed=1)})  # more frames: the same frame shape
    assert len(export_cache) == 1
    # Another process's model of the same weights finds the file.
    cpu_inference._EXPORTED.clear()
    again = recognizer('tsn_r18s')
    assert_close_norm(again.predict(batch), xla.predict(batch), NETWORK_REL)
    assert len(export_cache) == 1


def test_chunks_of_max_testing_views(monkeypatch):
    """TSM, 4 segments, 3 clips and max_testing_views=4: three backbone runs of 4 frames
    (a clip never split), the XLA model's scores."""
    ort = recognizer('tsm_r50s', max_testing_views=4)
    xla = recognizer('tsm_r50s', runtime='xla', max_testing_views=4)
    calls = SessionCalls(monkeypatch)
    batch = {'imgs': clips(12)}
    assert_close_norm(ort.predict(batch), xla.predict(batch), NETWORK_REL)
    assert calls.batches == [4, 4, 4]


def test_xla_once_the_model_changes(export_cache, monkeypatch):
    ort, xla = recognizer('tsn_r18s'), recognizer('tsn_r18s', runtime='xla')
    calls = SessionCalls(monkeypatch)
    x = ort.data_preprocessor(clips(3))
    ort.predict_scores(x)
    assert calls.batches == [3]
    # New weights: the exported backbone is stale, so XLA computes with the new ones.
    for model in (ort, xla):
        state = nnx.state(model.backbone, nnx.Param)
        nnx.update(model.backbone, jax.tree.map(lambda p: p * 1.5, state))
    assert_close_norm(ort.predict_scores(x), xla.predict_scores(x), NETWORK_REL)
    assert calls.batches == [3]
    ort.eval()
    ort.predict_scores(x)
    assert calls.batches == [3]  # a changed model stays on XLA
    assert len(export_cache) == 1


def test_traced_calls_run_on_xla(monkeypatch):
    ort = recognizer('tsn_r18s')
    calls = SessionCalls(monkeypatch)
    x = ort.data_preprocessor(clips(3))
    graphdef, state = nnx.split(ort)
    scores = jax.jit(lambda s, x: nnx.merge(graphdef, s).predict_scores(x))(state, x)
    assert calls.batches == []
    assert_close_norm(scores, recognizer('tsn_r18s', runtime='xla').predict_scores(x),
                      NETWORK_REL)


def test_export_failure_falls_back_to_xla(export_cache, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise NotImplementedError('no converter for this op')
    monkeypatch.setattr(cpu_inference, 'save_onnx', fail)
    ort, xla = recognizer('tsn_r18s'), recognizer('tsn_r18s', runtime='xla')
    batch = {'imgs': clips(3)}
    with caplog.at_level('WARNING'):
        scores = ort.predict(batch)
    assert 'stays on XLA' in caplog.text and 'no converter for this op' in caplog.text
    assert_close_norm(scores, xla.predict(batch), NETWORK_REL)


def test_runtime_choice(export_cache):
    """auto: 2D recognizers only (XLA was faster for I3D); onnxruntime: any recognizer;
    a localizer or an unknown runtime: a clear error."""
    assert not isinstance(recognizer('i3d_r50s'), tuple(cpu_inference._TYPES.values()))
    assert isinstance(recognizer('tsn_r18s'), tuple(cpu_inference._TYPES.values()))
    i3d = recognizer('i3d_r50s', runtime='onnxruntime')
    xla = recognizer('i3d_r50s', runtime='xla')
    imgs = np.random.default_rng(0).integers(0, 256, (1, 1, 8, SIZE, SIZE, 3), np.uint8)
    assert_close_norm(i3d.predict({'imgs': imgs}), xla.predict({'imgs': imgs}), NETWORK_REL)
    assert export_cache == [(onnx.BATCH_DIM, 8, SIZE, SIZE, 3)]
    with pytest.raises(ValueError, match='runtime must be one of auto, xla, onnxruntime'):
        recognizer('tsn_r18s', runtime='ort')
    with pytest.raises(ValueError, match='takes recognizers, not BMN'):
        init_recognizer(REPO / 'configs' / 'bmn_synthetic.py', runtime='onnxruntime')


def test_compiler_options(monkeypatch):
    """The options run convolutions on Eigen (no YNNPACK fusion in the program; the same
    result within float32 rounding of another summation order); they are given on x86-64
    only, and not where XLA_FLAGS sets the option itself."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 8), np.float32))
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 8, 16), np.float32))

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    eigen = jax.jit(conv, compiler_options=xla_options._EIGEN_CONVOLUTIONS).lower(x, w).compile()
    assert 'ynn_fusion' not in eigen.as_text()
    # 72 products summed per output in another order: a few ulps of the sum's scale.
    assert_close_norm(eigen(x, w), jax.jit(conv)(x, w), 1e-6)
    try:
        for machine, flags, expected in (
                ('x86_64', '', xla_options._EIGEN_CONVOLUTIONS), ('aarch64', '', {}),
                ('x86_64', '--xla_cpu_experimental_ynn_fusion_type=dot', {})):
            xla_options.compiler_options.cache_clear()
            monkeypatch.setattr(xla_options.platform, 'machine', lambda: machine)
            monkeypatch.setenv('XLA_FLAGS', flags)
            assert xla_options.compiler_options() == expected
    finally:
        xla_options.compiler_options.cache_clear()
