"""Export of the localizers (BMN, BSN's TEM and PEM) to ONNX and SavedModel: the exported
models run in onnxruntime and TensorFlow and equal the JAX model at batch sizes 1 and 3 (and
MMAction2's own outputs on the fixture inputs)."""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from flax import nnx

from action_jax.convert.localizers import load_localizer_checkpoint
from action_jax.export.signature import metadata, model_kind
from action_jax.export.verify import RELATIVE_TOLERANCE, max_relative_error, verify
from action_jax.export.__main__ import main as export_main
from action_jax.export.runtime import OnnxModel
from action_jax.export.saved_model import METADATA_FILE, load_saved_model
from action_jax.models.localizers import LOCALIZERS

FIXTURES = pathlib.Path(__file__).resolve().parent / 'fixtures'
NAMES = ('bmn_s', 'bsn_tem_s', 'bsn_pem_s')
# Per-video input of the fixture models (no batch): T x C (BMN, TEM), P x C (PEM).
SHAPES = {'bmn_s': (16, 32), 'bsn_tem_s': (16, 32), 'bsn_pem_s': (50, 32)}
OUTPUTS = {'bmn_s': ('confidence_map', 'start', 'end'), 'bsn_tem_s': ('action', 'start', 'end'),
           'bsn_pem_s': ('iou_scores',)}
# A config for each fixture model (`:NAME`); the PEM test pipeline's LoadProposals gives
# P = 50. `:NAME-bare` has no test pipeline.
CONFIG = f'''
import json
from action_jax.config import default_config


def get_config(arg):
    name, _, bare = arg.partition('-')
    config = default_config()
    config.model = json.load(open({str(FIXTURES)!r} + f'/{{name}}_model_cfg.json'))['model']
    load = (dict(type='LoadProposals', top_k=50, pgm_proposals_dir='p', pgm_features_dir='f')
            if name == 'bsn_pem_s' else dict(type='LoadLocalizationFeature'))
    if not bare:
        config.test_dataloader.dataset = dict(
            type='ActivityNetDataset', ann_file='unused.json',
            pipeline=[load, dict(type='PackLocalizationInputs')])
    return config
'''


@pytest.fixture(scope='module')
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('configs') / 'fixture_localizer.py'
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope='module')
def export(config_file):
    def run(name: str, out, *extra: str, config: str | None = None) -> dict:
        return export_main(['--config', config or f'{config_file}:{name}', '--checkpoint',
                            str(FIXTURES / f'{name}.pth'), '--out', str(out), *extra])
    return run


def jax_model(name: str):
    """The fixture's model built and loaded without the export code (the reference)."""
    cfg = dict(json.loads((FIXTURES / f'{name}_model_cfg.json').read_text())['model'])
    model = LOCALIZERS[cfg.pop('type')](**cfg, rngs=nnx.Rngs(0))
    load_localizer_checkpoint(model, FIXTURES / f'{name}.pth')
    return model


def jax_outputs(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """{output name: array} of the JAX model's probabilities, split as the export names them."""
    model = jax_model(name)
    if name == 'bsn_pem_s':
        return {'iou_scores': np.asarray(model.predict({'bsp_feature': jnp.asarray(x)}))}
    out = model.predict({'inputs': jnp.asarray(x)})
    if name == 'bmn_s':
        return {key: np.asarray(value) for key, value in out._asdict().items()}
    return {key: np.asarray(out[..., i]) for i, key in enumerate(OUTPUTS[name])}


def mmaction2_outputs(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fixture's input in our layout and MMAction2 1.2.0's outputs (probabilities) in
    the export's layout: MMAction2 is channels-first ([N, C, T], [N, 2, D, T])."""
    io = np.load(FIXTURES / f'{name}_io.npz')
    if name == 'bmn_s':
        return io['input'].transpose(0, 2, 1), {
            'confidence_map': io['confidence_map'].transpose(0, 2, 3, 1),
            'start': io['start'], 'end': io['end']}
    if name == 'bsn_tem_s':
        return io['input'].transpose(0, 2, 1), {
            key: io['tem_output'][:, i] for i, key in enumerate(OUTPUTS[name])}
    return io['input'], {'iou_scores': io['pem_output'][..., 0]}


def assert_matches(outputs, expected: dict[str, np.ndarray]):
    """Every named output equals the expected one within the export's own check: the
    network run by another runtime, relative to the output's scale (tests/tolerances.py's
    NETWORK_REL)."""
    if not isinstance(outputs, dict):  # one output: the array itself
        assert len(expected) == 1
        outputs = {next(iter(expected)): outputs}
    assert list(outputs) == list(expected)
    for key, value in expected.items():
        assert outputs[key].shape == value.shape, key
        assert max_relative_error(outputs[key], value) <= RELATIVE_TOLERANCE, key


def random_input(name: str, batch: int = 3, shape=None) -> np.ndarray:
    shape = shape or SHAPES[name]
    return np.random.default_rng(1).standard_normal((batch, *shape), dtype=np.float32)


@pytest.mark.parametrize('name', NAMES)
def test_onnx_matches_jax_and_mmaction2(name, tmp_path, export):
    path = tmp_path / f'{name}.onnx'
    summary = export(name, path)  # the command's own check: batch sizes 1 and 3
    assert summary['input'] == ['N', *SHAPES[name]]
    assert list(summary['relative_errors']) == list(OUTPUTS[name])
    assert summary['relative_error'] <= RELATIVE_TOLERANCE

    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[''] == 17
    assert [o.name for o in proto.graph.output] == list(OUTPUTS[name])
    for value in (*proto.graph.input, *proto.graph.output):  # batch dimension 'N' throughout
        assert value.type.tensor_type.shape.dim[0].dim_param == 'N'

    runner = OnnxModel(path)
    assert runner.output_names == list(OUTPUTS[name])
    assert runner.metadata['localizer'] == json.loads(
        (FIXTURES / f'{name}_model_cfg.json').read_text())['model']['type']
    assert runner.metadata['outputs'] == ','.join(OUTPUTS[name])
    assert runner.metadata['input_shape'] == ','.join(map(str, SHAPES[name]))
    # Independently of the export code's own check: one video and three.
    x = random_input(name)
    expected = jax_outputs(name, x)
    for batch in (1, 3):
        assert_matches(runner(x[:batch]), {k: v[:batch] for k, v in expected.items()})
    # MMAction2 1.2.0's outputs for the fixture input, through the exported graph.
    x, expected = mmaction2_outputs(name)
    assert_matches(runner(x), expected)


@pytest.mark.parametrize('name', NAMES)
def test_saved_model_matches_jax(name, tmp_path, export):
    out = tmp_path / f'{name}_savedmodel'
    export(name, out, '--format', 'saved_model', '--platforms', 'cpu', '--no-verify')
    run = load_saved_model(out)
    x = random_input(name)
    expected = jax_outputs(name, x)
    for batch in (1, 3):  # one polymorphic-batch model
        assert_matches(run(x[:batch]), {k: v[:batch] for k, v in expected.items()})
    info = json.loads((out / METADATA_FILE).read_text())
    assert info['outputs'] == ','.join(OUTPUTS[name])
    assert info['input_layout'] == ('N,P,C' if name == 'bsn_pem_s' else 'N,T,C')


def test_fixed_batch_other_length_and_opset(tmp_path, export):
    """TEM is convolutional: another T through --input-shape; a batch-2 graph at opset 13
    runs 1 and 3 videos (padded to whole batches), every output cut to the videos given."""
    path = tmp_path / 'tem.onnx'
    summary = export('bsn_tem_s', path, '--input-shape', '24', '32', '--batch-size', '2',
                     '--opset', '13')
    assert summary['relative_error'] <= RELATIVE_TOLERANCE
    assert summary['outputs'] == {key: [2, 24] for key in OUTPUTS['bsn_tem_s']}
    assert {o.domain: o.version for o in onnx.load(path).opset_import}[''] == 13
    runner = OnnxModel(path)
    assert runner.input_shape == [2, 24, 32]
    x = random_input('bsn_tem_s', shape=(24, 32))
    expected = jax_outputs('bsn_tem_s', x)
    for batch in (1, 3):
        assert_matches(runner(x[:batch]), {k: v[:batch] for k, v in expected.items()})
    with pytest.raises(ValueError, match=r'\[2, 24, 32\]'):
        runner(np.zeros((1, 16, 32), np.float32))


def test_bmn_onnx_holds_the_sampling_mask_once(tmp_path, export):
    """The file is the parameters plus the boundary-matching sampling mask, stored once
    (no copies or transposed duplicates of the largest constant)."""
    path = tmp_path / 'bmn.onnx'
    export('bmn_s', path, '--no-verify')
    model = jax_model('bmn_s')
    weights = sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    mask = model.sample_mask[...].size
    assert mask == 16 * 8 * 16 * 16  # T x (num_samples x T x T)
    expected = 4 * (weights + mask)
    assert expected < path.stat().st_size < expected + 32 * 1024


@pytest.mark.parametrize('name, shape, message', [
    ('bmn_s', ('24', '32'), 'temporal_dim=16'),  # the sampling mask fixes T
    ('bsn_tem_s', ('16', '48'), '32 features'),
    ('bsn_pem_s', ('50',), 'P C'),
])
def test_wrong_input_shapes_are_clear_errors(name, shape, message, tmp_path, export):
    with pytest.raises(ValueError, match=message):
        export(name, tmp_path / 'x.onnx', '--input-shape', *shape)
    assert not (tmp_path / 'x.onnx').exists()


def test_pem_needs_the_number_of_proposals(tmp_path, export, config_file):
    """Without LoadProposals in the test pipeline, P must be given."""
    config = f'{config_file}:bsn_pem_s-bare'
    with pytest.raises(ValueError, match='--input-shape P C'):
        export('bsn_pem_s', tmp_path / 'pem.onnx', config=config)
    summary = export('bsn_pem_s', tmp_path / 'pem.onnx', '--input-shape', '7', '32',
                     config=config)
    assert summary['input'] == ['N', 7, 32]
    assert OnnxModel(tmp_path / 'pem.onnx')(random_input('bsn_pem_s', 2, (7, 32))).shape == (2, 7)


def test_model_kinds_and_softmax(tmp_path, export):
    assert model_kind({'type': 'Recognizer3D'}) == 'recognizer'
    assert [model_kind({'type': t}) for t in LOCALIZERS] == ['localizer'] * 3
    with pytest.raises(ValueError, match=r"type 'DRN'.*recognizers.*localizers \(BMN, TEM, PEM\)"):
        model_kind({'type': 'DRN'})
    with pytest.raises(ValueError, match='--softmax is for recognizers'):
        export('bsn_pem_s', tmp_path / 'pem.onnx', '--softmax')


def test_verify_names_the_wrong_output():
    """verify checks every output: right 'action' and 'start' with a wrong 'end' fail."""
    def run(x):
        return dict(jax_outputs('bsn_tem_s', x), end=np.zeros((len(x), 16), np.float32))

    model = jax_model('bsn_tem_s')
    assert verify(lambda x: jax_outputs('bsn_tem_s', x), model, (16, 32), [1]) <= 1e-6
    with pytest.raises(RuntimeError, match="output 'end'"):
        verify(run, model, (16, 32), [1])


def test_metadata_describes_every_output():
    model = jax_model('bmn_s')
    info = metadata(model, (16, 32))
    assert info['localizer'] == 'BMN' and info['input_layout'] == 'N,T,C'
    assert info['outputs'] == 'confidence_map,start,end'
    assert info['output.confidence_map'].startswith('N,D,T,2:')
    assert info['temporal_dim'] == '16' and info['input_shape'] == '16,32'
