"""Initialise ResNet (2D) and ResNet3d backbones from a torchvision ImageNet ResNet checkpoint.

MMAction2 does this in `ResNet._load_torchvision_checkpoint` and `ResNet3d.inflate_weights`:
every ConvModule `name` takes torchvision's `name.weight` and `name.replace('conv', 'bn').*`
(`name.0` / `name.1` for a `downsample`); a 3D conv takes the 2D kernel repeated over time and
divided by the temporal kernel size, so a clip of identical frames gives the 2D response.
`fc.*` (the ImageNet classifier) and `num_batches_tracked` have no counterpart.
"""
import dataclasses
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.convert.mmaction2 import load_mmaction2_checkpoint
from action_jax.models.io import check_fit
from action_jax.models.layers import ConvModule

_BN_NAMES = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Torchvision key names, by what happened to them."""
    loaded: tuple[str, ...]
    missing: tuple[str, ...]     # wanted by the backbone, absent from the checkpoint
    unexpected: tuple[str, ...]  # in the checkpoint, used by no module
    mismatched: tuple[str, ...]  # present, but of a shape the backbone cannot take


def _ignored(key: str) -> bool:
    return key.startswith('fc.') or key.endswith('.num_batches_tracked')


def _torchvision_names(path: tuple) -> tuple[str, str]:
    """Names of the conv and BN that a ConvModule at `path` corresponds to in torchvision."""
    name = '.'.join(map(str, path))
    if path[-1] == 'downsample':
        return f'{name}.0', f'{name}.1'
    return name, name.replace('conv', 'bn')


def _to_kernel(weight: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """OIHW -> HWIO, inflated to THWIO (repeat over T, divide by T) for a 3D kernel.

    None when the 2D kernel does not fit `shape`.
    """
    if weight.ndim != 4:
        return None
    kernel = weight.transpose(2, 3, 1, 0)
    if kernel.shape != shape[-4:]:
        return None
    if len(shape) == 5:
        kernel = np.broadcast_to(kernel, shape) / shape[0]
    return kernel


def _targets(backbone: nnx.Module, state_dict: dict[str, np.ndarray]):
    """Yield (torchvision key, nnx Variable, value or None if it does not fit) for every
    parameter and statistic the backbone's ConvModules want."""
    for path, module in nnx.iter_modules(backbone):
        if not isinstance(module, ConvModule):
            continue
        conv_name, bn_name = _torchvision_names(path)
        key = f'{conv_name}.weight'
        kernel = module.conv.kernel
        value = state_dict.get(key)
        yield key, kernel, None if value is None else _to_kernel(value, kernel.shape)
        for tv_name, nnx_name in _BN_NAMES.items():
            key = f'{bn_name}.{tv_name}'
            variable = getattr(module.bn, nnx_name)
            value = state_dict.get(key)
            yield key, variable, None if value is None or value.shape != variable.shape else value


def init_backbone_from_torchvision(backbone: nnx.Module, path: str | os.PathLike, *,
                                   strict: bool = False) -> LoadReport:
    """Copy a torchvision ResNet checkpoint into `backbone` (ResNet or ResNet3d), in place.

    The file is read with `torch.load(weights_only=True)` (a `state_dict` entry is unwrapped).
    Anything that did not load is logged by name, as MMAction2 does (models/io.py
    `check_fit`); with `strict`, a missing or unexpected key is a CheckpointError instead and
    the backbone is left unchanged.
    """
    state_dict = load_mmaction2_checkpoint(path)
    targets = list(_targets(backbone, state_dict))
    mismatched = {key: (state_dict[key].shape, variable.shape)
                  for key, variable, value in targets if key in state_dict and value is None}
    report = LoadReport(
        loaded=tuple(key for key, _, value in targets if value is not None),
        missing=tuple(key for key, _, _ in targets if key not in state_dict),
        unexpected=tuple(sorted(key for key in set(state_dict) - {k for k, _, _ in targets}
                                if not _ignored(key))),
        mismatched=tuple(mismatched))
    check_fit(os.fspath(path), missing=report.missing, unexpected=report.unexpected,
              mismatched=mismatched, strict=strict)
    for _, variable, value in targets:
        if value is not None:
            variable[...] = jnp.asarray(value, variable.dtype)
    return report
