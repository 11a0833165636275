"""Load MMAction2 (PyTorch) checkpoints into action_jax models, by name.

    state_dict = load_mmaction2_checkpoint('tsn_r50.pth')
    apply_state_dict(model, state_dict)          # strict: every key and parameter must match

A tensor whose shape differs from the model's (a new head) is skipped with a warning
(models/io.py `check_fit`, the policy of every weight source).

Key `a.b.0.c.weight` goes to the NNX path ('a', 'b', 0, 'c', name): conv weights
(O, I, *kernel) become kernels (*kernel, I, O), Linear weights are transposed, BatchNorm
weight/bias/running_mean/running_var become scale/bias/mean/var, `num_batches_tracked` is
dropped. The `.net` of MMAction2's wrapper modules (TSM's TemporalShift, TemporalPool) is
dropped when the path without it exists. Any other leaf loads into the model variable of the
same name (e.g. BMN's `sample_mask`).
"""
import os
import pickle
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

# CheckpointError is imported from here by the converters and their users.
from action_jax.models.io import CheckpointError, check_fit

_LEAF_NAMES = {
    'weight': ('kernel', 'scale'),
    'bias': ('bias',),
    'running_mean': ('mean',),
    'running_var': ('var',),
}
_SKIPPED_LEAVES = ('num_batches_tracked',)


def load_mmaction2_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state_dict of an MMAction2 checkpoint (0.x or 1.x) as float/int numpy arrays.

    Reads with `torch.load(weights_only=True)`, which never runs pickled code: a file whose
    unpickling would need to import or call anything beyond tensors and containers is
    refused with CheckpointError. Accepts `{'state_dict': ..., 'meta': ..., 'optimizer':
    ...}` or a bare state_dict; strips DataParallel's `module.` prefixes.
    """
    import torch  # Only needed to read .pth files.

    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is mostly generic advice; keep the line naming the blocked global.
        reason = next((line.strip() for line in str(err).splitlines() if 'GLOBAL' in line),
                      str(err))
        raise CheckpointError(
            f'refusing to load {os.fspath(path)!r}: its pickle needs code beyond plain '
            f'tensors and containers, which weights_only loading does not run ({reason})'
        ) from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f'{os.fspath(path)!r} holds no state_dict')
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f'{os.fspath(path)!r}: state_dict entry {key!r} is a '
                                  f'{type(value).__name__}, not a tensor')
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.float()  # numpy has no bfloat16
        arrays[key.removeprefix('module.')] = value.detach().cpu().numpy()
    return arrays


def torch_to_nnx_layout(array: np.ndarray) -> np.ndarray:
    """PyTorch weight layout -> Flax: Linear (O, I) -> (I, O); conv (O, I, *k) -> (*k, I, O)."""
    if array.ndim < 2:
        return array
    return array.transpose(*range(2, array.ndim), 1, 0)


def _variables(model: nnx.Module) -> dict[tuple, nnx.Variable]:
    return {path: node for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Variable) and not isinstance(node, nnx.RngState)}


def _target_path(key: str, variables: Mapping[tuple, nnx.Variable]) -> tuple | None:
    """The model path for a state_dict key, or None if the model has no such variable."""
    parts = key.split('.')
    for names in (parts, [p for p in parts if p != 'net']):
        *modules, leaf = names
        prefix = tuple(int(p) if p.isdigit() else p for p in modules)
        for name in _LEAF_NAMES.get(leaf, (leaf,)):
            if prefix + (name,) in variables:
                return prefix + (name,)
    return None


def apply_state_dict(model: nnx.Module, state_dict: Mapping[str, np.ndarray],
                     strict: bool = True, source: str = 'state_dict'
                     ) -> tuple[list[str], list[str]]:
    """Copy `state_dict` (PyTorch names and layouts) into `model` in place, by check_fit's
    policy: with `strict` a missing or unexpected key raises CheckpointError naming them; a
    tensor of another shape than the model's is skipped and named in a warning.

    Returns (missing model paths, unexpected keys).
    """
    variables = _variables(model)
    updates, unexpected, mismatched, found = {}, [], {}, set()
    for key, value in state_dict.items():
        if key.rsplit('.', 1)[-1] in _SKIPPED_LEAVES:
            continue
        path = _target_path(key, variables)
        if path is None:
            unexpected.append(key)
            continue
        found.add(path)
        value = np.asarray(value)
        target = variables[path]
        if path[-1] == 'kernel':
            value = torch_to_nnx_layout(value)
        if value.shape != target.shape:
            mismatched[key] = (value.shape, target.shape)
        else:
            updates[path] = value
    missing = ['/'.join(map(str, p)) for p in variables if p not in found]
    check_fit(source, missing=missing, unexpected=unexpected, mismatched=mismatched,
              strict=strict)
    for path, value in updates.items():
        variables[path].set_value(jnp.asarray(value, dtype=variables[path].dtype))
    return missing, unexpected
