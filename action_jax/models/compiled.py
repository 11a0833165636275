"""Models that compile themselves when called.

    model = compile_on_call(model)   # in place; what init_recognizer returns
    model(x)                         # jit-compiled on the first call per input shape
    model.predict(batch)             # also predict_scores, pooled_features; the same
                                     # compiled programs after

Called directly, an NNX module runs eagerly, one XLA program per operation: a ResNet-50
recognizer takes ~2x its jitted time. `compile_on_call` swaps the model's class for a subclass
whose METHODS run under `jax.jit`, with the model (an NNX
pytree) as an argument: every call reads the weights the model holds then (`nnx.update` is
seen), its structure (train/eval, swapped submodules, attributes) is part of the cache key,
and Variables the call changes (BatchNorm statistics and rng counts in training mode) are
written back, as the eager call would. Nothing else changes: `nnx.state`, `nnx.split`,
`nnx.clone`, `fuse_conv_bn` and export see the same graph and state, and `isinstance` the
same class. Called inside a trace (another `jit`, `grad`, an exporter), the methods run as
the plain model's, so they inline into the outer program.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax
from flax import nnx

from action_jax import xla_options

M = TypeVar('M', bound=nnx.Module)

METHODS = ('__call__', 'predict', 'predict_scores', 'pooled_features')
_TYPES: dict[type, type] = {}


def _apply(eager: Callable, treedef, leaves: list) -> tuple:
    """eager(model, *args) on the unflattened (model, args), and {leaf index: new value} for
    the model's leaves the call replaced."""
    model, args = jax.tree.unflatten(treedef, leaves)
    out = eager(model, *args)
    after = jax.tree.leaves(model)
    return out, {i: new for i, (new, old) in enumerate(zip(after, leaves)) if new is not old}


@functools.cache
def _jitted_apply() -> Callable:
    return xla_options.jit(_apply, static_argnums=(0, 1))


def _write_back(model: nnx.Module, changed: dict) -> None:
    """Stores the call's changed leaves in the model's Variables (one leaf each)."""
    variables = jax.tree.leaves(model, is_leaf=lambda v: isinstance(v, nnx.Variable))
    for i, value in changed.items():
        variables[i].set_value(value)


def _compiled(name: str, eager: Callable) -> Callable:
    @functools.wraps(eager)
    def method(self, *args):
        leaves, treedef = jax.tree.flatten((self, args))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return eager(self, *args)
        out, changed = _jitted_apply()(eager, treedef, leaves)
        if changed:
            _write_back(self, changed)
        return out
    method.__name__ = name
    return method


def subclass_like(cls: type, methods: dict[str, Callable]) -> type:
    """A subclass of `cls` with `methods`, named and documented as `cls` (what users and
    reprs see is the model's own class)."""
    return type(cls.__name__, (cls,), dict(methods, __module__=cls.__module__,
                                           __qualname__=cls.__qualname__, __doc__=cls.__doc__))


def compiled_type(cls: type) -> type:
    """The subclass of `cls` with compiled METHODS (one per class, so graphs stay equal)."""
    if cls not in _TYPES:
        _TYPES[cls] = subclass_like(cls, {name: _compiled(name, getattr(cls, name))
                                          for name in METHODS if hasattr(cls, name)})
    return _TYPES[cls]


def is_compiled(model: nnx.Module) -> bool:
    """Whether the model's class is a compiled one or derives from one."""
    return isinstance(model, tuple(_TYPES.values()))


def compile_on_call(model: M) -> M:
    """`model` itself, its calls now jit-compiled (see the module docstring)."""
    if not is_compiled(model):
        model.__class__ = compiled_type(type(model))
    return model
