"""Exporting recognizers (TSN, TSM, I3D) and localizers (BMN, BSN's TEM and PEM) for
inference engines.

    python -m action_jax.export --config configs/tsn_k400.py --checkpoint tsn.pth \
        --format onnx --out tsn.onnx [--opset 17] [--batch-size dynamic|N] [--softmax]
    python -m action_jax.export ... --format saved_model --out tsn_savedmodel/
    python -m action_jax.export --config configs/bmn_anet.py --checkpoint bmn.pth --out bmn.onnx

The config's `model.type` picks the kind: Recognizer2D/Recognizer3D, or BMN/TEM/PEM.

Formats:
  onnx         ONNX through jax2onnx, opset 17 by default (what TensorRT 8.6+ reads; any
               opset jax2onnx supports can be asked for). Runs on onnxruntime and, after
               `trtexec --onnx=model.onnx --saveEngine=model.engine`, on TensorRT
               (action_jax.export.runtime has thin wrappers for both).
  saved_model  a TensorFlow SavedModel through jax2tf, with a polymorphic batch dimension;
               serving signature `serving_default`: {'input'} -> {'scores'} (localizers:
               their named outputs, below). The computation is serialised StableHLO (one
               XlaCallModule op) lowered for CPU and CUDA.

The exported function is the model's test-mode prediction, as `--mode test` computes it.
Recognizers:

  input  'input'   float32 [N, F, H, W, 3] for 2D models (TSN, TSM: F = views x frames,
                   e.g. 25 clips x 10 crops = 250 for TSN's K400 test) or [N, V, T, H, W, 3]
                   for 3D models (I3D: V views of T frames). RGB, channels last, normalised
                   as the config's data_preprocessor does: (pixel - mean) / std with pixels
                   in 0..255 (ImageNet statistics by default). F/V/T/H/W come from the
                   config's test pipeline (SampleFrames, crops, FormatShape) unless
                   `--input-shape` gives them; N is dynamic unless `--batch-size N`.
  output 'scores'  float32 [N, num_classes]: per-video scores after the head's
                   average_clips ('prob': mean of per-view softmax, 'score': mean of raw
                   scores). `--softmax` makes it 'prob' whatever the config says.

Localizers (`model.predict`: probabilities, after the sigmoids; LOCALIZER_IO lists them):

  BMN  input 'input' float32 [N, T, C]: T = temporal_dim steps of C = feat_dim features, as
       LoadLocalizationFeature reads them (channels last; MMAction2's [N, C, T] transposed).
       outputs 'confidence_map' [N, D, T, 2] (D = T durations: [n, d, s] is the proposal
       of start s and duration d + 1; channel 0 regression (IoU), 1 classification),
       'start' [N, T], 'end' [N, T].
  TEM  input as BMN's (C = tem_feat_dim); outputs 'action', 'start', 'end', each [N, T].
  PEM  input 'input' float32 [N, P, C]: the BSP features of P proposals (LoadProposals'
       bsp_feature, zero-padded to its top_k; C = pem_feat_dim); output 'iou_scores' [N, P].

  T and C come from the model (temporal_dim, its first layer's input features); P from the
  test pipeline's LoadProposals top_k. `--input-shape T C` (PEM: P C) overrides them (BMN's
  T is fixed by its sampling mask; TEM and PEM take any T or P).

Why jax2onnx and not jax2tf + tf2onnx: current JAX exports to TensorFlow only by native
serialisation, so jax2tf emits a single `XlaCallModule` op holding StableHLO; tf2onnx has
no conversion for that op (the old non-native jax2tf path that produced plain TF ops is
gone). jax2onnx converts the jaxpr primitive by primitive into ONNX operators instead, so
the graph is plain Conv/MaxPool/MatMul/... that onnxruntime and TensorRT run natively.
jax2tf remains the right tool for the SavedModel, where XlaCallModule is native.

Every export is checked by default: the exported model is run (onnxruntime / TensorFlow)
on random input at batch sizes 1 and 3 (or the fixed batch size) and each output must equal
the JAX model's within 1e-4 of that output's scale.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.models.localizers import LOCALIZERS
from action_jax.models.localizers.layers import Buffer
from action_jax.models.recognizers import Recognizer3D
from action_jax.models.preprocessor import DEFAULT_MEAN, DEFAULT_STD
from action_jax.progress import track

INPUT_NAME = 'input'
OUTPUT_NAME = 'scores'
RELATIVE_TOLERANCE = 1e-4
FORMATS = ('onnx', 'saved_model')
RECOGNIZERS = ('Recognizer2D', 'Recognizer3D')

_CROPS = {'CenterCrop': 1, 'ThreeCrop': 3, 'TenCrop': 10, 'RandomCrop': 1}
_3D_FORMATS = ('NCTHW', 'NTHWC')


class LocalizerIO(NamedTuple):
    """How a localizer is exported: the key `predict` reads its input from, the input's
    layout and meaning, and its outputs in graph order as (name, layout, meaning)."""
    batch_key: str
    input_layout: str
    input: str
    outputs: tuple[tuple[str, str, str], ...]


LOCALIZER_IO = {
    'BMN': LocalizerIO('inputs', 'N,T,C', 'T steps x C features (LoadLocalizationFeature)', (
        ('confidence_map', 'N,D,T,2', '[n, d, s]: proposal of start s, duration d + 1; '
                                      'channel 0 regression (IoU), 1 classification'),
        ('start', 'N,T', 'start probability per step'),
        ('end', 'N,T', 'end probability per step'))),
    'TEM': LocalizerIO('inputs', 'N,T,C', 'T steps x C features (LoadLocalizationFeature)', (
        ('action', 'N,T', 'actionness probability per step'),
        ('start', 'N,T', 'start probability per step'),
        ('end', 'N,T', 'end probability per step'))),
    'PEM': LocalizerIO('bsp_feature', 'N,P,C',
                       'BSP features of P proposals (LoadProposals, zero-padded to top_k)', (
                           ('iou_scores', 'N,P', 'expected IoU of each proposal'),)),
}


def model_kind(model_cfg: Mapping[str, Any]) -> str:
    """'recognizer' or 'localizer' for a config's model dict, by its type."""
    kind = model_cfg.get('type')
    if kind in RECOGNIZERS:
        return 'recognizer'
    if kind in LOCALIZERS:
        return 'localizer'
    raise ValueError(f'cannot export a model of type {kind!r}: the exporter takes recognizers '
                     f'({", ".join(RECOGNIZERS)}: TSN, TSM, I3D) and localizers '
                     f'({", ".join(LOCALIZERS)})')


def is_localizer(model: nnx.Module) -> bool:
    return isinstance(model, tuple(LOCALIZERS.values()))


def output_names(model: nnx.Module) -> tuple[str, ...]:
    """The exported outputs' names, in graph order."""
    if is_localizer(model):
        return tuple(name for name, _, _ in LOCALIZER_IO[type(model).__name__].outputs)
    return (OUTPUT_NAME,)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    """MMAction2's crop/scale sizes: an int, or (w, h)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def input_shape_from_pipeline(pipeline: Sequence[Mapping[str, Any]]) -> tuple[int, ...]:
    """One video's model input shape, without batch and channels, from a test pipeline:
    (F, H, W) for 2D formats, (V, T, H, W) for 3D ones ((T, H, W) with collapse=True)."""
    clip_len = num_clips = size = input_format = None
    crops, collapse = 1, False
    for step in pipeline:
        kind = step.get('type', '')
        if kind.endswith('SampleFrames'):
            clip_len, num_clips = int(step['clip_len']), int(step.get('num_clips', 1))
        elif kind == 'Resize':
            scale = step['scale']
            fixed = not step.get('keep_ratio', True) and not isinstance(scale, (int, float))
            # Only an exact (w, h) resize fixes the size; other resizes depend on the video.
            size = _pair(scale)[::-1] if fixed and min(scale) > 0 else None
        elif kind in _CROPS:
            size = _pair(step.get('crop_size', step.get('size')))[::-1]
            crops *= _CROPS[kind]
        elif kind == 'FormatShape':
            input_format, collapse = step['input_format'], step.get('collapse', False)
    missing = [name for name, value in (('SampleFrames', clip_len), ('a crop or fixed Resize',
                                                                     size),
                                        ('FormatShape', input_format)) if value is None]
    if missing:
        raise ValueError(f'cannot infer the input shape from the test pipeline (no '
                         f'{", ".join(missing)}); give it with --input-shape')
    views = num_clips * crops
    if input_format in _3D_FORMATS:
        return (clip_len, *size) if collapse else (views, clip_len, *size)
    return (views * clip_len, *size)


def _feature_dim(model: nnx.Module) -> int:
    """The localizer's input features (its first layer's input size)."""
    first = {'BMN': lambda m: m.x_1d_b[0], 'TEM': lambda m: m.conv1, 'PEM': lambda m: m.fc1}
    return int(first[type(model).__name__](model).in_features)


def localizer_input_shape(model: nnx.Module,
                          pipeline: Sequence[Mapping[str, Any]] | None = None
                          ) -> tuple[int, int]:
    """A localizer's per-video input shape without batch: (T, C) for BMN and TEM from the
    model, (P, C) for PEM with P the test pipeline's LoadProposals top_k."""
    if type(model).__name__ != 'PEM':
        return int(model.temporal_dim), _feature_dim(model)
    top_k = [step['top_k'] for step in pipeline or () if step.get('type') == 'LoadProposals'
             and step.get('top_k')]
    if not top_k:
        raise ValueError('cannot infer the number of proposals from the test pipeline (no '
                         'LoadProposals with top_k); give it with --input-shape P C')
    return int(top_k[0]), _feature_dim(model)


def default_input_shape(model: nnx.Module, config: Mapping[str, Any]) -> tuple[int, ...]:
    """The per-video input shape (without batch and channels) that the config implies."""
    try:
        pipeline = config['test_dataloader']['dataset']['pipeline']
    except (KeyError, AttributeError):
        pipeline = None
    if is_localizer(model):
        return localizer_input_shape(model, pipeline)
    return input_shape_from_pipeline(pipeline or ())


def check_input_shape(model: nnx.Module, shape: Sequence[int]) -> tuple[int, ...]:
    """Validates a per-video input shape for the model's kind (2D: F H W; 3D: [V] T H W;
    BMN/TEM: T C; PEM: P C)."""
    shape = tuple(int(s) for s in shape)
    if is_localizer(model):
        name = type(model).__name__
        layout = 'P C' if name == 'PEM' else 'T C'
        if len(shape) != 2 or min(shape) <= 0:
            raise ValueError(f'input shape {shape} does not fit {name}: give {layout} '
                             f'(positive, without batch)')
        if shape[1] != _feature_dim(model):
            raise ValueError(f'input shape {shape} does not fit {name}: it takes '
                             f'{_feature_dim(model)} features, not {shape[1]}')
        if name == 'BMN' and shape[0] != model.temporal_dim:
            raise ValueError(f'input shape {shape} does not fit BMN: its sampling mask fixes '
                             f'T to temporal_dim={model.temporal_dim}')
        return shape
    ranks = (3, 4) if isinstance(model, Recognizer3D) else (3,)
    if len(shape) not in ranks or min(shape) <= 0:
        layout = '[V] T H W' if len(ranks) == 2 else 'F H W'
        raise ValueError(f'input shape {shape} does not fit {type(model).__name__}: give '
                         f'{layout} (positive, without batch and channels)')
    return shape


def sample_shape(model: nnx.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """One video's full input shape (channels included): recognizers add RGB's 3."""
    return tuple(input_shape) if is_localizer(model) else (*input_shape, 3)


def prepare_for_export(model: nnx.Module, softmax: bool = False) -> nnx.Module:
    """The model set up for export, in place: eval mode, backbone run on all views at once
    (test_cfg's max_testing_views chunking saves memory only and would become a loop op),
    and with `softmax`, average_clips='prob' (recognizers only)."""
    model.eval()
    if is_localizer(model):
        if softmax:
            raise ValueError('--softmax is for recognizers; localizers output probabilities')
        if type(model).__name__ == 'TEM' and model.conv3.out_features != 3:
            raise ValueError(f'TEM with output_dim={model.conv3.out_features} cannot be '
                             'exported: its outputs are action, start and end')
        return model
    model.max_testing_views = None
    if softmax:
        model.cls_head.average_clips = 'prob'
    return model


def _predict_outputs(model: nnx.Module, x: jax.Array) -> tuple[jax.Array, ...]:
    """The model's test-mode outputs for x, float32, in output_names order."""
    if not is_localizer(model):
        return (model.predict_scores(x).astype(jnp.float32),)
    io = LOCALIZER_IO[type(model).__name__]
    out = model.predict({io.batch_key: x})
    if isinstance(out, tuple):  # BMNOutput
        outs = tuple(out)
    elif len(io.outputs) == 1:  # PEM
        outs = (out,)
    else:  # TEM: [N, T, 3] split into action, start, end
        outs = tuple(out[..., i] for i in range(len(io.outputs)))
    return tuple(o.astype(jnp.float32) for o in outs)


def pure_predict(model: nnx.Module
                 ) -> tuple[Callable[[Any, jax.Array], tuple[jax.Array, ...]], Any]:
    """(predict(weights, x) -> float32 outputs, a tuple in output_names order, weights): the
    model's test-mode prediction as a pure function of its parameters, BatchNorm statistics
    and buffers (BMN's sampling mask)."""
    graphdef, weights, rest = nnx.split(model, nnx.Any(nnx.Param, nnx.BatchStat, Buffer), ...)

    def predict(weights, x: jax.Array) -> tuple[jax.Array, ...]:
        return _predict_outputs(nnx.merge(graphdef, weights, rest), x)

    return predict, weights


def output_shapes(model: nnx.Module, input_shape: Sequence[int],
                  batch: int | str = 'N') -> dict[str, list]:
    """{output name: [batch, ...]} for a per-video input shape (no computation)."""
    predict, weights = pure_predict(model)
    spec = jax.ShapeDtypeStruct((1, *sample_shape(model, input_shape)), jnp.float32)
    shapes = jax.eval_shape(predict, weights, spec)
    return {name: [batch, *s.shape[1:]] for name, s in zip(output_names(model), shapes)}


def metadata(model: nnx.Module, model_cfg: Mapping[str, Any],
             input_shape: Sequence[int]) -> dict[str, str]:
    """What a caller needs to feed the exported model, stored with it."""
    if is_localizer(model):
        return _localizer_metadata(model, input_shape)
    pre = model_cfg.get('data_preprocessor') or {}
    layout = 'N,V,T,H,W,C' if len(input_shape) == 4 else (
        'N,T,H,W,C' if isinstance(model, Recognizer3D) else 'N,F,H,W,C')
    return {
        'producer': 'action_jax',
        'recognizer': type(model).__name__,
        'input_layout': layout,
        'input_shape': ','.join(map(str, input_shape)),
        'normalization': 'RGB 0..255, (x - mean) / std',
        'mean': ','.join(str(float(v)) for v in pre.get('mean', DEFAULT_MEAN)),
        'std': ','.join(str(float(v)) for v in pre.get('std', DEFAULT_STD)),
        'average_clips': str(model.cls_head.average_clips),
        'num_classes': str(model.cls_head.num_classes),
    }


def _localizer_metadata(model: nnx.Module, input_shape: Sequence[int]) -> dict[str, str]:
    io = LOCALIZER_IO[type(model).__name__]
    info = {
        'producer': 'action_jax',
        'localizer': type(model).__name__,
        'input_layout': io.input_layout,
        'input_shape': ','.join(map(str, input_shape)),
        'input': io.input,
        'normalization': 'none (features as the pipeline loads them)',
        'outputs': ','.join(name for name, _, _ in io.outputs),
    }
    for name, layout, meaning in io.outputs:
        info[f'output.{name}'] = f'{layout}: {meaning}'
    if hasattr(model, 'temporal_dim'):
        info['temporal_dim'] = str(model.temporal_dim)
    return info


def max_relative_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    """max |outputs - reference| / max |reference| (0 for an all-zero reference)."""
    outputs, reference = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    if outputs.shape != reference.shape:
        raise ValueError(f'output shape {outputs.shape} != reference {reference.shape}')
    scale = np.abs(reference).max()
    return float(np.abs(outputs - reference).max() / scale) if scale else \
        float(np.abs(outputs).max())


def as_outputs(result: Any, names: Sequence[str]) -> tuple[np.ndarray, ...]:
    """An exported model's result (one array, a {name: array} dict or a sequence) as a
    tuple in `names` order."""
    if isinstance(result, Mapping):
        missing = [name for name in names if name not in result]
        if missing:
            raise ValueError(f'the exported model returned {sorted(result)}, not {missing}')
        return tuple(result[name] for name in names)
    outputs = (result,) if len(names) == 1 and not isinstance(result, (tuple, list)) \
        else tuple(result)
    if len(outputs) != len(names):
        raise ValueError(f'the exported model returned {len(outputs)} outputs, not '
                         f'{len(names)} ({", ".join(names)})')
    return outputs


def verify_outputs(run: Callable[[np.ndarray], Any], model: nnx.Module,
                   input_shape: Sequence[int], batch_sizes: Sequence[int],
                   seed: int = 0) -> dict[str, float]:
    """Runs the exported model (`run`: the array, or {name: array} for several outputs) and
    the JAX model on the same random inputs; returns each output's largest relative error,
    raising if one exceeds RELATIVE_TOLERANCE."""
    predict, weights = pure_predict(model)
    predict = jax.jit(predict)
    names = output_names(model)
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(names, 0.0)
    for batch in track(batch_sizes, 'Verifying the export'):
        x = rng.standard_normal((batch, *sample_shape(model, input_shape)), dtype=np.float32)
        for name, out, ref in zip(names, as_outputs(run(x), names), predict(weights, x)):
            error = max_relative_error(out, ref)
            if error > RELATIVE_TOLERANCE:
                which = f' in output {name!r}' if len(names) > 1 else ''
                raise RuntimeError(f'the exported model differs from the JAX model at batch '
                                   f'size {batch}{which}: relative error {error:.2e} > '
                                   f'{RELATIVE_TOLERANCE}')
            worst[name] = max(worst[name], error)
    return worst


def verify(run: Callable[[np.ndarray], Any], model: nnx.Module,
           input_shape: Sequence[int], batch_sizes: Sequence[int], seed: int = 0) -> float:
    """verify_outputs' largest error over all outputs."""
    return max(verify_outputs(run, model, input_shape, batch_sizes, seed).values())
