"""Exporting recognizers (TSN, TSM, I3D) for inference engines.

    python -m action_jax.export --config configs/tsn_k400.py --checkpoint tsn.pth \
        --format onnx --out tsn.onnx [--opset 17] [--batch-size dynamic|N] [--softmax]
    python -m action_jax.export ... --format saved_model --out tsn_savedmodel/

Formats:
  onnx         ONNX through jax2onnx, opset 17 by default (what TensorRT 8.6+ reads; any
               opset jax2onnx supports can be asked for). Runs on onnxruntime and, after
               `trtexec --onnx=model.onnx --saveEngine=model.engine`, on TensorRT
               (action_jax.export.runtime has thin wrappers for both).
  saved_model  a TensorFlow SavedModel through jax2tf, with a polymorphic batch dimension;
               serving signature `serving_default`: {'input'} -> {'scores'}. The computation
               is serialised StableHLO (one XlaCallModule op) lowered for CPU and CUDA.

The exported function is the model's test-mode prediction, as `--mode test` computes it:

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

Why jax2onnx and not jax2tf + tf2onnx: current JAX exports to TensorFlow only by native
serialisation, so jax2tf emits a single `XlaCallModule` op holding StableHLO; tf2onnx has
no conversion for that op (the old non-native jax2tf path that produced plain TF ops is
gone). jax2onnx converts the jaxpr primitive by primitive into ONNX operators instead, so
the graph is plain Conv/MaxPool/MatMul/... that onnxruntime and TensorRT run natively.
jax2tf remains the right tool for the SavedModel, where XlaCallModule is native.

Every export is checked by default: the exported model is run (onnxruntime / TensorFlow)
on random input at batch sizes 1 and 3 (or the fixed batch size) and must equal the JAX
model within 1e-4 of the output's scale.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.models.recognizers import Recognizer3D
from action_jax.train.step import DEFAULT_MEAN, DEFAULT_STD

INPUT_NAME = 'input'
OUTPUT_NAME = 'scores'
RELATIVE_TOLERANCE = 1e-4
FORMATS = ('onnx', 'saved_model')

_CROPS = {'CenterCrop': 1, 'ThreeCrop': 3, 'TenCrop': 10, 'RandomCrop': 1}
_3D_FORMATS = ('NCTHW', 'NTHWC')


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


def check_input_shape(model: nnx.Module, shape: Sequence[int]) -> tuple[int, ...]:
    """Validates a per-video input shape for the model's kind (2D: F H W; 3D: [V] T H W)."""
    shape = tuple(int(s) for s in shape)
    ranks = (3, 4) if isinstance(model, Recognizer3D) else (3,)
    if len(shape) not in ranks or min(shape) <= 0:
        layout = '[V] T H W' if len(ranks) == 2 else 'F H W'
        raise ValueError(f'input shape {shape} does not fit {type(model).__name__}: give '
                         f'{layout} (positive, without batch and channels)')
    return shape


def prepare_for_export(model: nnx.Module, softmax: bool = False) -> nnx.Module:
    """The model set up for export, in place: eval mode, backbone run on all views at once
    (test_cfg's max_testing_views chunking saves memory only and would become a loop op),
    and with `softmax`, average_clips='prob'."""
    model.eval()
    model.max_testing_views = None
    if softmax:
        model.cls_head.average_clips = 'prob'
    return model


def pure_predict(model: nnx.Module) -> tuple[Callable[[Any, jax.Array], jax.Array], Any]:
    """(predict(weights, x) -> float32 per-video scores, weights): the model's test-mode
    prediction as a pure function of its parameters and BatchNorm statistics."""
    graphdef, weights, rest = nnx.split(model, nnx.Any(nnx.Param, nnx.BatchStat), ...)

    def predict(weights, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, weights, rest).predict(x).astype(jnp.float32)

    return predict, weights


def metadata(model: nnx.Module, model_cfg: Mapping[str, Any],
             input_shape: Sequence[int]) -> dict[str, str]:
    """What a caller needs to feed the exported model, stored with it."""
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


def max_relative_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    """max |outputs - reference| / max |reference| (0 for an all-zero reference)."""
    outputs, reference = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    if outputs.shape != reference.shape:
        raise ValueError(f'output shape {outputs.shape} != reference {reference.shape}')
    scale = np.abs(reference).max()
    return float(np.abs(outputs - reference).max() / scale) if scale else \
        float(np.abs(outputs).max())


def verify(run: Callable[[np.ndarray], np.ndarray], model: nnx.Module,
           input_shape: Sequence[int], batch_sizes: Sequence[int], seed: int = 0) -> float:
    """Runs the exported model (`run`) and the JAX model on the same random inputs; returns
    the largest relative error, raising if it exceeds RELATIVE_TOLERANCE."""
    predict, weights = pure_predict(model)
    predict = jax.jit(predict)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *input_shape, 3), dtype=np.float32)
        error = max_relative_error(run(x), predict(weights, x))
        if error > RELATIVE_TOLERANCE:
            raise RuntimeError(f'the exported model differs from the JAX model at batch size '
                               f'{batch}: relative error {error:.2e} > {RELATIVE_TOLERANCE}')
        worst = max(worst, error)
    return worst

