"""Export to ONNX (jax2onnx) and SavedModel (jax2tf): the exported models run in onnxruntime
and TensorFlow and equal the JAX model (and MMAction2's own scores on the fixture inputs)."""
import json
import pathlib
import runpy
import sys

import numpy as np
import onnx
import pytest
from flax import nnx

from action_jax.apis import load_config
from action_jax.export.signature import input_shape_from_pipeline, prepare_for_export
from action_jax.export.verify import RELATIVE_TOLERANCE, max_relative_error, verify
from action_jax.export.__main__ import main as export_main
from action_jax.export.onnx import export_onnx
from action_jax.export.runtime import OnnxModel, TensorRTModel
from action_jax.export.saved_model import METADATA_FILE, load_saved_model
from action_jax.models.io import build_recognizer, load_weights
from tolerances import NETWORK_REL, assert_close_norm

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / 'tests' / 'configs' / 'fixture_recognizer.py'
FIXTURES = REPO / 'tests' / 'fixtures'
NAMES = ('tsn_r18s', 'tsm_r50s', 'i3d_r50s')
# Per-video input (no batch, no channels) that the fixture config's test pipeline gives.
SHAPES = {'tsn_r18s': (3, 64, 64), 'tsm_r50s': (4, 64, 64), 'i3d_r50s': (1, 8, 64, 64)}


def export(name: str, out, *extra: str) -> dict:
    return export_main(['--config', f'{CONFIG}:{name}', '--checkpoint',
                        str(FIXTURES / f'{name}.pth'), '--out', str(out), *extra])


@pytest.fixture(scope='module')
def jax_model():
    """The fixture's model built and loaded without the export code (the reference)."""
    models = {}

    def get(name: str):
        if name not in models:
            cfg = json.loads((FIXTURES / f'{name}_model_cfg.json').read_text())['model']
            model = build_recognizer(cfg)
            load_weights(model, str(FIXTURES / f'{name}.pth'))
            model.eval()
            models[name] = model
        return models[name]
    return get


@pytest.fixture(scope='module')
def reference(jax_model):
    """(x, JAX scores) for 3 random videos of a fixture model, computed once per model."""
    cache = {}

    def get(name: str, shape=None):
        shape = tuple(shape or SHAPES[name])
        if (name, shape) not in cache:
            x = np.random.default_rng(0).standard_normal((3, *shape, 3), dtype=np.float32)
            predict = nnx.jit(lambda model, x: model.predict_scores(x))
            cache[name, shape] = x, np.asarray(predict(jax_model(name), x))
        return cache[name, shape]
    return get


def assert_matches(run, x, expected):
    """The exported model equals the JAX model on one video and on all three (the batch
    size changes nothing in eval mode, so the 1-video reference is the first row)."""
    for batch in (1, len(x)):
        out = run(x[:batch])
        assert out.shape == expected[:batch].shape
        assert max_relative_error(out, expected[:batch]) <= RELATIVE_TOLERANCE


def mmaction2_input(name: str) -> np.ndarray:
    """The fixture's input (MMAction2's channels-first layout) moved to channels-last."""
    x = np.load(FIXTURES / f'{name}_io.npz')['input']
    return np.moveaxis(x, 2, -1)  # [N, S, C, H, W] or [N, V, C, T, H, W]


@pytest.mark.parametrize('name', NAMES)
def test_onnx_matches_jax_and_mmaction2(name, tmp_path, reference):
    path = tmp_path / f'{name}.onnx'
    summary = export(name, path, '--no-verify')  # compared here instead
    assert summary['input'] == ['N', *SHAPES[name], 3]

    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[''] == 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == 'N'

    runner = OnnxModel(path)
    assert runner.metadata['input_layout'] == ('N,V,T,H,W,C' if name == 'i3d_r50s'
                                               else 'N,F,H,W,C')
    assert_matches(runner, *reference(name))
    # MMAction2 1.2.0's scores for the fixture input, through the exported graph.
    expected = np.load(FIXTURES / f'{name}_io.npz')['pred_score']
    assert_close_norm(runner(mmaction2_input(name)), expected, NETWORK_REL)


# TSM's SavedModel adds nothing: jax2tf serialises whatever JAX lowers.
@pytest.mark.parametrize('name', ['tsn_r18s', 'i3d_r50s'])
def test_saved_model_matches_jax(name, tmp_path, reference):
    out = tmp_path / f'{name}_savedmodel'
    export(name, out, '--format', 'saved_model', '--no-verify')
    assert_matches(load_saved_model(out), *reference(name))
    info = json.loads((out / METADATA_FILE).read_text())
    assert info['input_shape'] == ','.join(map(str, SHAPES[name]))


def test_multi_view_i3d_with_a_fixed_batch(tmp_path, reference):
    path = tmp_path / 'i3d.onnx'
    summary = export('i3d_r50s', path, '--input-shape', '2', '8', '32', '32', '--batch-size',
                     '2', '--opset', '13')
    assert summary['relative_error'] <= RELATIVE_TOLERANCE  # the command's own check
    proto = onnx.load(path)
    assert {o.domain: o.version for o in proto.opset_import}[''] == 13
    runner = OnnxModel(path)
    assert runner.input_shape == [2, 2, 8, 32, 32, 3]
    # One and three videos through a batch-2 graph: padded to whole batches.
    assert_matches(runner, *reference('i3d_r50s', (2, 8, 32, 32)))
    with pytest.raises(ValueError, match=r'\[2, 2, 8, 32, 32, 3\]'):
        runner(np.zeros((1, 2, 8, 32, 33, 3), np.float32))


def test_softmax_makes_probabilities(tmp_path):
    config = load_config(f'{CONFIG}:tsn_r18s')
    config.model['cls_head']['average_clips'] = 'score'
    model = build_recognizer(config.model)
    load_weights(model, str(FIXTURES / 'tsn_r18s.pth'))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32, 3), dtype=np.float32)
    for softmax in (False, True):
        prepare_for_export(model, softmax=softmax)
        runner = OnnxModel(export_onnx(model, tmp_path / f'{softmax}.onnx', (3, 32, 32)))
        scores = runner(x)
        assert max_relative_error(scores, np.asarray(model.predict_scores(x))) <= RELATIVE_TOLERANCE
        sums = scores.sum(axis=1)
        # 'score' averages raw scores; --softmax switches to 'prob', whose sums are 1 within
        # ~8 eps (exp, an 8-term sum, a division, the clip mean): 1e-5 = 84 eps leaves room
        # for ONNX Runtime's own exp.
        assert (np.abs(sums - 1).max() < 1e-5) == softmax


def test_input_shape_from_pipeline():
    k400 = load_config(str(REPO / 'configs' / 'tsn_k400.py'))
    assert input_shape_from_pipeline(k400.test_dataloader.dataset.pipeline) == (250, 224, 224)
    i3d = [dict(type='DecordInit'),
           dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=10,
                test_mode=True),
           dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 256)),
           dict(type='ThreeCrop', crop_size=256), dict(type='FormatShape', input_format='NCTHW'),
           dict(type='PackActionInputs')]
    assert input_shape_from_pipeline(i3d) == (30, 32, 256, 256)
    fixed = i3d[:3] + [dict(type='Resize', scale=(160, 128), keep_ratio=False)] + i3d[-2:]
    assert input_shape_from_pipeline(fixed) == (10, 32, 128, 160)
    with pytest.raises(ValueError, match='--input-shape'):
        input_shape_from_pipeline(i3d[:4] + i3d[-2:])  # no crop: the size depends on the video


def test_verify_rejects_a_wrong_export(jax_model):
    model = jax_model('tsn_r18s')
    with pytest.raises(RuntimeError, match='relative error'):
        verify(lambda x: np.zeros((len(x), 10), np.float32), model, (3, 32, 32), [1])


def test_tensorrt_missing_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorrt', None)  # makes `import tensorrt` fail
    with pytest.raises(ImportError, match='`tensorrt` package'):
        TensorRTModel('model.engine')


def test_command_line(tmp_path, monkeypatch, capsys):
    """`python -m action_jax.export` (run in-process: a fresh interpreter would spend its time
    on imports): a fixed batch size, and the export checks itself against JAX."""
    out = tmp_path / 'tsn.onnx'
    monkeypatch.setattr(sys, 'argv', [
        'action_jax.export', '--config', f'{CONFIG}:tsn_r18s', '--checkpoint',
        str(FIXTURES / 'tsn_r18s.pth'), '--out', str(out), '--batch-size', '1'])
    monkeypatch.delitem(sys.modules, 'action_jax.export.__main__')  # imported above; rerun
    runpy.run_module('action_jax.export', run_name='__main__', alter_sys=True)
    printed = capsys.readouterr().out
    assert "input 'input' float32 [1, 3, 64, 64, 3]" in printed
    assert 'matches JAX: max relative error' in printed
    assert OnnxModel(out).input_shape == [1, 3, 64, 64, 3]
