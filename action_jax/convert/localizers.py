"""Load MMAction2 BMN / TEM / PEM checkpoints into `action_jax.models.localizers`, by name.

    model = BMN(**model_cfg, rngs=nnx.Rngs(0))
    load_localizer_checkpoint(model, 'bmn_400x100_2x8_9e_activitynet_feature.pth')

Key `x_2d_p.2.weight` -> model path ('x_2d_p', 2, 'kernel'), `fc1.bias` -> ('fc1', 'bias').
Conv weights (O, I/groups, *k) become kernels (*k, I/groups, O), Linear weights (O, I) become
(I, O). BMN's `sample_mask` and `bm_mask` are not loaded: the model computes them from its
config, and they must equal the checkpoint's (a mismatch means the config differs from the
one the checkpoint was trained with). Strict: every parameter must be loaded and every key used.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.convert.mmaction2 import (CheckpointError, load_mmaction2_checkpoint,
                                          torch_to_nnx_layout)
from action_jax.models.localizers.layers import Buffer

_LEAF_NAMES = {'weight': 'kernel', 'bias': 'bias'}
# Largest |difference| tolerated between a stored and a recomputed buffer (they are equal
# bit for bit when the config matches; a wrong config changes them by far more).
_BUFFER_ATOL = 1e-6


def _model_path(key: str) -> tuple:
    *modules, leaf = key.split('.')
    return (*(int(p) if p.isdigit() else p for p in modules), _LEAF_NAMES.get(leaf, leaf))


def apply_localizer_state_dict(model: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copy a BMN/TEM/PEM state_dict (PyTorch names and layouts) into `model`, strictly.

    Raises CheckpointError naming every missing parameter, unexpected key, shape mismatch
    and differing buffer.
    """
    variables = {path: var for path, var in nnx.iter_graph(model)
                 if isinstance(var, nnx.Variable) and not isinstance(var, nnx.RngState)}
    params = {p for p, v in variables.items() if isinstance(v, nnx.Param)}
    updates, problems, unexpected = {}, [], []
    for key, value in state_dict.items():
        path = _model_path(key)
        target = variables.get(path)
        value = np.asarray(value)
        if isinstance(target, Buffer):
            diff = (np.abs(value - np.asarray(target[...])).max()
                    if value.shape == target.shape else np.inf)
            if diff > _BUFFER_ATOL:
                problems.append(f'{key}: the checkpoint\'s buffer differs from the one this model '
                                f'computes from its config (max |diff| {diff}); the config does '
                                'not match the checkpoint')
            continue
        if path not in params:
            unexpected.append(key)
            continue
        if path[-1] == 'kernel':
            value = torch_to_nnx_layout(value)
        if value.shape != target.shape:
            problems.append(f'size mismatch: {key}: checkpoint {value.shape} (as laid out for '
                            f'Flax) vs model {"/".join(map(str, path))} {target.shape}')
        updates[path] = value
    missing = ['/'.join(map(str, p)) for p in sorted(params - set(updates), key=str)]
    if missing:
        problems.append(f'missing keys (model parameters not in the checkpoint): {missing}')
    if unexpected:
        problems.append(f'unexpected keys (checkpoint entries the model lacks): {unexpected}')
    if problems:
        raise CheckpointError('cannot load state_dict:\n  ' + '\n  '.join(problems))
    for path, value in updates.items():
        variables[path].set_value(jnp.asarray(value, dtype=variables[path].dtype))


def load_localizer_checkpoint(model: nnx.Module, path: str | os.PathLike) -> None:
    """Read an MMAction2 .pth (torch.load weights_only) and apply it to `model`."""
    apply_localizer_state_dict(model, load_mmaction2_checkpoint(path))
