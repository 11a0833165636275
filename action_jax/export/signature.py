"""The exported signature of a model, from its own `export_spec()` (models/export_spec.py):
input and output names and shapes, the per-video input shape the config implies, metadata,
and the model's test-mode prediction as a pure function of its weights."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.models.builder import LAZY_MODELS, MODELS
from action_jax.models.export_spec import ExportSpec
from action_jax.models.localizers import LOCALIZERS
from action_jax.models.localizers.layers import Buffer
from action_jax.models.recognizers import BaseRecognizer
from action_jax.registry import lookup

INPUT_NAME = 'input'

_CROPS = {'CenterCrop': 1, 'ThreeCrop': 3, 'TenCrop': 10, 'RandomCrop': 1}
_3D_FORMATS = ('NCTHW', 'NTHWC')


def model_kind(model_cfg: Mapping[str, Any]) -> str:
    """'recognizer' or 'localizer' for a config's model dict, by its type (registered
    recognizer subclasses included)."""
    kind = model_cfg.get('type')
    if kind in LOCALIZERS:
        return 'localizer'
    try:
        cls = lookup(MODELS, LAZY_MODELS, kind, 'model', 'model')
    except KeyError:
        cls = None
    if isinstance(cls, type) and issubclass(cls, BaseRecognizer):
        return 'recognizer'
    raise ValueError(f'cannot export a model of type {kind!r}: the exporter takes recognizers '
                     f'(Recognizer2D, Recognizer3D and their subclasses: TSN, TSM, I3D) and '
                     f'localizers ({", ".join(LOCALIZERS)})')


def output_names(model: nnx.Module) -> tuple[str, ...]:
    """The exported outputs' names, in graph order."""
    return tuple(output.name for output in model.export_spec().outputs)


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


def _proposals_from_pipeline(pipeline: Sequence[Mapping[str, Any]]) -> int:
    top_k = [step['top_k'] for step in pipeline if step.get('type') == 'LoadProposals'
             and step.get('top_k')]
    if not top_k:
        raise ValueError('cannot infer the number of proposals from the test pipeline (no '
                         'LoadProposals with top_k); give it with --input-shape P C')
    return int(top_k[0])


def default_input_shape(model: nnx.Module, config: Mapping[str, Any]) -> tuple[int, ...]:
    """The per-video input shape (without batch and channels) that the model and its
    config's test pipeline imply."""
    try:
        pipeline = config['test_dataloader']['dataset']['pipeline'] or ()
    except (KeyError, AttributeError):
        pipeline = ()
    shape = model.export_spec().shape
    if shape is None:
        return input_shape_from_pipeline(pipeline)
    return tuple(_proposals_from_pipeline(pipeline) if dim == 'proposals' else dim
                 for dim in shape)


def _layout_words(spec: ExportSpec) -> str:
    """'F H W', 'V T H W or T H W', 'T C': the per-video dims a user gives."""
    def words(layout: str) -> str:
        dims = layout.split(',')[1:]
        return ' '.join(dims[:len(dims) - len(spec.channels)])
    return ' or '.join(words(layout) for layout in spec.layouts.values())


def check_input_shape(model: nnx.Module, shape: Sequence[int]) -> tuple[int, ...]:
    """Validates a per-video input shape against the model's spec (2D: F H W; 3D: [V] T H W;
    BMN/TEM: T C; PEM: P C)."""
    spec = model.export_spec()
    shape = tuple(int(s) for s in shape)
    if len(shape) not in spec.layouts or min(shape) <= 0:
        extra = ' and channels' if spec.channels else ''
        raise ValueError(f'input shape {shape} does not fit {spec.model}: give '
                         f'{_layout_words(spec)} (positive, without batch{extra})')
    for expected, actual, reason in zip(spec.shape or (), shape, spec.fixed):
        if reason is not None and actual != expected:
            raise ValueError(f'input shape {shape} does not fit {spec.model}: '
                             + reason.format(expected=expected, actual=actual))
    return shape


def sample_shape(model: nnx.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """One video's full input shape: the per-video shape and the channels (RGB's 3)."""
    return (*input_shape, *model.export_spec().channels)


def prepare_for_export(model: nnx.Module, softmax: bool = False) -> nnx.Module:
    """The model set up for export, in place (its `prepare_export`: eval mode, ...;
    `softmax`: recognizers output probabilities)."""
    model.prepare_export(softmax)
    return model


def pure_predict(model: nnx.Module
                 ) -> tuple[Callable[[Any, jax.Array], tuple[jax.Array, ...]], Any]:
    """(predict(weights, x) -> float32 outputs, a tuple in output_names order, weights): the
    model's test-mode prediction as a pure function of its parameters, BatchNorm statistics
    and buffers (BMN's sampling mask)."""
    graphdef, weights, rest = nnx.split(model, nnx.Any(nnx.Param, nnx.BatchStat, Buffer), ...)

    def predict(weights, x: jax.Array) -> tuple[jax.Array, ...]:
        return nnx.merge(graphdef, weights, rest).export_outputs(x)

    return predict, weights


def output_shapes(model: nnx.Module, input_shape: Sequence[int],
                  batch: int | str = 'N') -> dict[str, list]:
    """{output name: [batch, ...]} for a per-video input shape (no computation)."""
    predict, weights = pure_predict(model)
    spec = jax.ShapeDtypeStruct((1, *sample_shape(model, input_shape)), jnp.float32)
    shapes = jax.eval_shape(predict, weights, spec)
    return {name: [batch, *s.shape[1:]] for name, s in zip(output_names(model), shapes)}


def metadata(model: nnx.Module, input_shape: Sequence[int]) -> dict[str, str]:
    """What a caller needs to feed the exported model and read its outputs, stored with it."""
    spec = model.export_spec()
    info = {
        'producer': 'action_jax',
        spec.kind: spec.model,
        'input_layout': spec.layouts[len(input_shape)],
        'input_shape': ','.join(map(str, input_shape)),
        'input': spec.input,
        'outputs': ','.join(output.name for output in spec.outputs),
        **{f'output.{name}': f'{layout}: {meaning}' for name, layout, meaning in spec.outputs},
    }
    return {**info, **spec.metadata}
