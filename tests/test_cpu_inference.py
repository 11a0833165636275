"""init_recognizer on CPU runs a 2D recognizer's backbone on onnxruntime
(export/cpu_inference.py): the XLA model's results, one export per input shape, chunks of
max_testing_views, XLA again once the model changes or inside a trace; and the XLA:CPU
compiler options (xla_options.py)."""
import concurrent.futures
import pathlib
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from action_jax import apis, xla_options
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
    assert apis.with_runtime(ort, 'onnxruntime') is ort  # routed again: the file is reused
    ort.predict(batch)
    assert len(export_cache) == 1 and len(calls.batches) == 6
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
    scores = jax.jit(lambda x: ort.predict_scores(x))(x)
    assert calls.batches == []
    assert_close_norm(scores, recognizer('tsn_r18s', runtime='xla').predict_scores(x),
                      NETWORK_REL)
    assert_close_norm(jax.vmap(ort)(x[None])[0], ort(x), NETWORK_REL)
    assert calls.batches == [3]  # only the untraced call


def test_threads_share_a_model(monkeypatch):
    """Concurrent calls of one model: each on onnxruntime, each with the XLA model's scores."""
    ort, xla = recognizer('tsn_r18s'), recognizer('tsn_r18s', runtime='xla')
    calls = SessionCalls(monkeypatch)
    inputs = [{'imgs': clips(3, seed=i)} for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ort.predict, inputs))
    for batch, scores in zip(inputs, results):
        assert_close_norm(scores, xla.predict(batch), NETWORK_REL)
    assert calls.batches == [3] * 8


def test_export_failure_falls_back_to_xla(export_cache, monkeypatch, caplog):
    """A backbone jax2onnx cannot convert: one warning, then the compiled XLA program (traced
    once, reused: not the model's code op by op)."""
    def fail(*args, **kwargs):
        raise NotImplementedError('no converter for this op')
    monkeypatch.setattr(cpu_inference, 'save_onnx', fail)
    ort, xla = recognizer('tsn_r18s'), recognizer('tsn_r18s', runtime='xla')
    backbone_calls = []
    backbone_call = type(ort.backbone).__call__
    monkeypatch.setattr(type(ort.backbone), '__call__', lambda backbone, x: (
        backbone_calls.append(x.shape), backbone_call(backbone, x))[1])
    batch = {'imgs': clips(3)}
    jax.clear_caches()
    with caplog.at_level('WARNING'):
        scores = ort.predict(batch)
    assert 'stays on XLA' in caplog.text and 'no converter for this op' in caplog.text
    ort.predict({'imgs': clips(3, seed=1)})
    assert len(backbone_calls) == 1  # one trace
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
    # What the route cannot take: on XLA under 'auto', an error when asked for.
    config = load_config(f'{FIXTURE_CONFIG}:tsn_r18s')
    config.compute_dtype = 'bfloat16'
    assert not isinstance(init_recognizer(config, device='cpu'),
                          tuple(cpu_inference._TYPES.values()))
    with pytest.raises(ValueError, match='another dtype than float32'):
        init_recognizer(config, device='cpu', runtime='onnxruntime')
    model = recognizer('tsn_r18s', runtime='xla')
    model.train()
    with pytest.raises(ValueError, match='training mode'):
        apis.with_runtime(model, 'onnxruntime')


def test_compiler_options(monkeypatch):
    """The options run convolutions on Eigen (no YNNPACK fusion in the program; the same
    result within float32 rounding of another summation order); they are given on x86-64
    only, and not where XLA_FLAGS sets the option itself."""
    # Large enough for jaxlib 0.10 to give it to YNNPACK by default (16x16x8 is not).
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 16, 16, 64), np.float32))
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 64, 64), np.float32))

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    eigen = jax.jit(conv, compiler_options=xla_options._EIGEN_CONVOLUTIONS).lower(x, w).compile()
    assert 'ynn_fusion' not in eigen.as_text()
    if platform.machine().lower() in ('x86_64', 'amd64'):  # where jaxlib 0.10 uses YNNPACK
        assert 'ynn_fusion' in jax.jit(conv).lower(x, w).compile().as_text()
    # 576 products summed per output in another order: sqrt(576) ulps of the sum's scale
    # (24 * 6e-8), with a margin.
    assert_close_norm(eigen(x, w), jax.jit(conv)(x, w), 1e-5)
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
