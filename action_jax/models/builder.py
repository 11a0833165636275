"""Build models from MMAction2-style config dicts.

    build_model(dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=50),
                     cls_head=dict(type='TSNHead', num_classes=400, in_channels=2048)),
                rngs=nnx.Rngs(0))

Sub-configs `backbone`, `neck` and `cls_head` are built recursively; other dict arguments
(`consensus`, `test_cfg`, `data_preprocessor`, ...) are passed through as dicts. JSON lists
become tuples. Components receive `rngs` and `dtype` (the compute dtype) if they take them.
"""
import inspect
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from action_jax.models.backbones.resnet import ResNet
from action_jax.models.backbones.resnet_tsm import ResNetTSM
from action_jax.models.heads import I3DHead, TSMHead, TSNHead
from action_jax.models.recognizers import Recognizer2D, Recognizer3D
from action_jax.registry import lookup

MODELS: dict[str, type] = {
    'Recognizer2D': Recognizer2D,
    'Recognizer3D': Recognizer3D,
    'ResNet': ResNet,
    'ResNetTSM': ResNetTSM,
    'TSNHead': TSNHead,
    'TSMHead': TSMHead,
    'I3DHead': I3DHead,
}

# Imported on first use (action_jax/registry.py): type name -> module defining that class.
LAZY_MODELS: dict[str, str] = {
    'ResNet3d': 'action_jax.models.backbones.resnet3d',
    # Temporal action localizers (models/localizers: LOCALIZERS).
    'BMN': 'action_jax.models.localizers',
    'TEM': 'action_jax.models.localizers',
    'PEM': 'action_jax.models.localizers',
}

_SUBMODULE_KEYS = ('backbone', 'neck', 'cls_head')


def _accepted_args(cls: type) -> set[str]:
    """Argument names of `cls.__init__`, following `**kwargs` up to the base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != 'self'}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def build_model(cfg: Mapping, *, rngs: nnx.Rngs, dtype=jnp.float32) -> nnx.Module:
    """Build the component named by `cfg['type']` with the other entries as arguments.

    Raises KeyError for an unknown type and TypeError for an unknown argument, naming the
    component (e.g. `model.cls_head (TSNHead)`) and the offending key.
    """
    return _build(cfg, rngs, dtype, 'model')


def _build(cfg: Mapping, rngs: nnx.Rngs, dtype, where: str) -> nnx.Module:
    args = {k: _tuples(v) for k, v in cfg.items()}
    type_name = args.pop('type', None)
    cls = lookup(MODELS, LAZY_MODELS, type_name, where, 'model')
    accepted = _accepted_args(cls)
    shared = {k: v for k, v in (('rngs', rngs), ('dtype', dtype)) if k in accepted}
    accepted -= {'dtype', 'rngs'}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise TypeError(f'{where} ({type_name}): unknown argument(s) {unknown}; '
                        f'accepted: {sorted(accepted)}')
    for key in _SUBMODULE_KEYS:
        if isinstance(args.get(key), Mapping):
            args[key] = _build(args[key], rngs, dtype, f'{where}.{key}')
    args.update(shared)
    return cls(**args)
