"""CPU inference with the backbone on onnxruntime: what `init_recognizer` returns on CPU.

    model = backbone_on_onnxruntime(model)   # in place, a model from compile_on_call
    model.predict(batch)                      # also predict_scores(x), model(x),
                                              # pooled_features(batch)

Why: onnxruntime's CPU kernels (convolutions with their bias, residual add and ReLU fused)
run a ResNet-50 backbone in less time than XLA:CPU: TSN-R50 1x8x224² took 0.18 s against
XLA's 0.29 and MMAction2's 0.32 on a 2-core Intel Xeon (benchmarks/RESULTS.md), with the
same scores within float32 rounding (~1e-6 relative).

Only the backbone is exported, once per weights and per frame (or clip) shape, and cached on
disk (action_jax.export.cache; ~5 s for a ResNet-50): it does nearly all the work, and the
views still run in chunks of the config's `max_testing_views`, so memory stays as bounded as
on XLA. The rest of each method (preprocessing, the head's consensus, fc and average_clips)
runs as the model's own code. What is exported is the model as this function found it: after
a change of its weights or structure (`nnx.update`, `model.train()`, another
`average_clips`), inside a trace (jit, grad, an exporter), or for an input shape whose
backbone cannot be exported, the calls run compiled on XLA as before.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import threading
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from action_jax.export.cache import cache_dir, cached_file, fingerprint
from action_jax.export.onnx import BATCH_DIM, save_onnx
from action_jax.export.runtime import OnnxModel
from action_jax.models.compiled import METHODS, is_compiled, subclass_like
from action_jax.models.recognizers import BaseRecognizer


def available() -> bool:
    """Whether the exporter and onnxruntime are installed (the `export` extra)."""
    return all(importlib.util.find_spec(name) for name in ('jax2onnx', 'onnxruntime'))


def unsupported(model: nnx.Module) -> str | None:
    """Why `backbone_on_onnxruntime` cannot take `model`, or None."""
    if not is_compiled(model):
        return 'it takes a model from compile_on_call'
    if not isinstance(model, BaseRecognizer):
        return f'it takes recognizers, not {type(model).__name__}'
    if type(model).extract_feat not in (BaseRecognizer.extract_feat, _extract_feat):
        return f'{type(model).__name__} has its own extract_feat'
    if any(leaf.dtype != jnp.float32 for leaf in jax.tree.leaves(model)
           if jnp.issubdtype(leaf.dtype, jnp.floating)) \
            or getattr(model.data_preprocessor, 'dtype', jnp.float32) != jnp.float32:
        return 'the model computes in another dtype than float32'
    if any(getattr(module, 'use_running_average', True) is False
           or getattr(module, 'deterministic', True) is False
           for _, module in nnx.iter_modules(model)):
        return 'the model is in training mode'
    return None


@dataclasses.dataclass
class _Exported:
    """The model as `backbone_on_onnxruntime` found it, the device of its weights, and its
    backbone's sessions by input shape (None: that shape could not be exported)."""
    treedef: Any
    leaves: list
    device: jax.Device
    sessions: dict[tuple[int, ...], OnnxModel | None] = dataclasses.field(default_factory=dict)


class _OnXla(Exception):
    """Raised inside a routed call that has to run on XLA after all."""


_EXPORTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Per thread, the models inside a routed call, with their record (what extract_feat reads).
_ACTIVE = threading.local()
_TYPES: dict[type, type] = {}


def _active() -> dict[int, _Exported]:
    if not hasattr(_ACTIVE, 'models'):
        _ACTIVE.models = {}
    return _ACTIVE.models


def _unchanged(model: nnx.Module, args: tuple) -> _Exported | None:
    """The model's export record if the model is still what was exported (a changed one
    loses it for good) and the call is not being traced."""
    exported = _EXPORTED.get(model)
    if exported is None or any(isinstance(leaf, jax.core.Tracer)
                               for leaf in jax.tree.leaves(args)):
        return None
    leaves, treedef = jax.tree.flatten(model)
    if (treedef != exported.treedef or len(leaves) != len(exported.leaves)
            or any(new is not old for new, old in zip(leaves, exported.leaves))):
        del _EXPORTED[model]
        return None
    return exported


def _export_backbone(backbone: nnx.Module, shape: tuple[int, ...]) -> OnnxModel:
    graphdef, state = nnx.split(backbone)
    name = f'{fingerprint(backbone, shape, kind="backbone")}.backbone.onnx'

    def write(out: str) -> None:
        logging.info('Exporting the %s backbone for onnxruntime (input %s; once, kept in %s).',
                     type(backbone).__name__, list(shape), cache_dir())
        save_onnx(lambda x: nnx.merge(graphdef, state)(x), (BATCH_DIM, *shape), out,
                  model_name=type(backbone).__name__, output_names=['features'])

    return OnnxModel(cached_file(name, write), providers=['CPUExecutionProvider'])


# jax2onnx swaps JAX's primitives while it converts: one export at a time, and threads
# wanting the same session wait for it rather than trace the model meanwhile.
_EXPORT_LOCK = threading.Lock()


def _session(exported: _Exported, backbone: nnx.Module, shape: tuple[int, ...]
             ) -> OnnxModel | None:
    with _EXPORT_LOCK:
        if shape not in exported.sessions:
            try:
                exported.sessions[shape] = _export_backbone(backbone, shape)
            except Exception as e:  # an op jax2onnx cannot convert: XLA runs it
                logging.warning('%s backbone stays on XLA for input %s: %s',
                                type(backbone).__name__, list(shape), e)
                exported.sessions[shape] = None
        return exported.sessions[shape]


def _routed_method(name: str, compiled: Callable, plain: Callable) -> Callable:
    """The method run as the model's own (uncompiled) code with the backbone on onnxruntime
    while the model is unchanged, as the compiled method otherwise."""
    @functools.wraps(plain)
    def method(self, *args):
        active = _active()
        if id(self) in active:  # one routed method calling another (predict -> predict_scores)
            return plain(self, *args)
        exported = _unchanged(self, args)
        if exported is None:
            return compiled(self, *args)
        active[id(self)] = exported
        try:
            # Eager ops (preprocessing, the head) where the weights live, as the jit would.
            with jax.default_device(exported.device):
                return plain(self, *args)
        except _OnXla:
            return compiled(self, *args)
        finally:
            del active[id(self)]
    method.__name__ = name
    return method


def _extract_feat(self, x, test_mode: bool = False):
    """BaseRecognizer.extract_feat with the backbone on onnxruntime."""
    exported = _active().get(id(self))
    if exported is None or isinstance(x, jax.core.Tracer):
        return BaseRecognizer.extract_feat(self, x, test_mode)
    folded = np.asarray(self.fold_views(np.asarray(x))[0])
    session = _session(exported, self.backbone, folded.shape[1:]) if len(folded) else None
    if session is None:
        raise _OnXla
    chunk = self.max_testing_views if test_mode and self.max_testing_views else len(folded)
    features = np.concatenate([session(folded[i:i + chunk])
                               for i in range(0, len(folded), chunk)])
    return jax.device_put(features, exported.device)


def _routed_type(cls: type) -> type:
    """The subclass of compiled `cls` whose METHODS route the backbone to onnxruntime."""
    if cls not in _TYPES:
        plain = cls.__mro__[1]  # the model's own class under the compiled subclass
        methods = {name: _routed_method(name, getattr(cls, name), getattr(plain, name))
                   for name in METHODS if hasattr(cls, name)}
        _TYPES[cls] = subclass_like(cls, dict(methods, extract_feat=_extract_feat))
    return _TYPES[cls]


def backbone_on_onnxruntime(model: nnx.Module) -> nnx.Module:
    """`model` itself (compiled, float32, in eval mode), its backbone now run by onnxruntime
    (see the module docstring); ValueError for a model it cannot take (`unsupported`)."""
    reason = unsupported(model)
    if reason is not None:
        raise ValueError(f'cannot run the backbone on onnxruntime: {reason}')
    if type(model) not in _TYPES.values():
        model.__class__ = _routed_type(type(model))
    leaves, treedef = jax.tree.flatten(model)
    devices = {d for leaf in leaves if isinstance(leaf, jax.Array) for d in leaf.devices()}
    _EXPORTED[model] = _Exported(treedef, leaves, devices.pop() if len(devices) == 1
                                 else jax.devices('cpu')[0])
    return model
