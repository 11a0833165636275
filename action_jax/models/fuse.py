"""Fold BatchNorm into the preceding convolution for inference.

    fused = fuse_conv_bn(model)      # eval-only copy; `model` is left untouched
    scores = fused.predict_scores(x)

Every `ConvModule` (conv without bias -> BatchNorm -> optional ReLU), 2D or 3D, including
TSM's `TemporalShiftConv` (the shift still runs on the conv's input), becomes a conv with a
bias that holds the BatchNorm's running statistics and affine parameters:

    s = scale / sqrt(var + eps)
    kernel' = kernel * s             (per output channel)
    bias'   = bias - mean * s

and its `bn` becomes `FoldedBatchNorm`, an identity with no state. Nothing in `layers.py`
changes: `ConvModule.__call__` still runs `bn(conv(x))`. The folding is done in float64 on
the host and stored in each conv's `param_dtype`.

With `conv3d_as_2d` (by default on CPU), every folded 3D conv also becomes a `Conv3dAs2d`
(layers.py): the same kernel and bias (same parameter paths), computed as a single 2D
convolution, which XLA:CPU runs several times faster.

The copy is for inference only. `model.train()` marks the `FoldedBatchNorm`s as training
(as for any BatchNorm), and a forward pass then raises: batch statistics cannot be
recovered once folded. BatchNorms outside `ConvModule`s are left as they are.
"""
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.models.layers import ConvModule, Conv3dAs2d, convs_3d_as_2d

M = TypeVar('M', bound=nnx.Module)


class FoldedBatchNorm(nnx.Module):
    """Stands in for a BatchNorm folded into its conv by `fuse_conv_bn`: the identity.

    Keeps `use_running_average` so that `train()`/`eval()` reach it; in training mode
    (use_running_average False) it refuses to run.
    """

    def __init__(self, num_features: int, epsilon: float):
        self.num_features = num_features
        self.epsilon = epsilon  # of the folded BatchNorm, for the record
        self.use_running_average = True

    def __call__(self, x, use_running_average: bool | None = None):
        if not (self.use_running_average if use_running_average is None
                else use_running_average):
            raise RuntimeError('this BatchNorm was folded into its conv by fuse_conv_bn: the '
                               'model is for inference only (call .eval(), or train the '
                               'unfused model)')
        return x


def _fold(conv: nnx.Conv | Conv3dAs2d, bn: nnx.BatchNorm) -> None:
    """Folds `bn` (eval mode) into `conv`, in place."""
    if bn.axis not in (-1, conv.kernel[...].ndim - 1):
        raise ValueError(f'cannot fold a BatchNorm over axis {bn.axis} into a channels-last conv')
    kernel = np.asarray(conv.kernel[...], np.float64)
    out = kernel.shape[-1]
    mean = np.asarray(bn.mean[...], np.float64)
    var = np.asarray(bn.var[...], np.float64)
    gamma = np.asarray(bn.scale[...], np.float64) if bn.scale is not None else np.ones(out)
    beta = np.asarray(bn.bias[...], np.float64) if bn.bias is not None else np.zeros(out)
    bias = np.asarray(conv.bias[...], np.float64) if conv.bias is not None else np.zeros(out)
    s = gamma / np.sqrt(var + bn.epsilon)
    # The BatchNorm may have its own compute dtype (e.g. bf16); the conv's dtype now rules.
    conv.kernel[...] = jnp.asarray(kernel * s, conv.kernel[...].dtype)
    new_bias = jnp.asarray(beta + (bias - mean) * s, conv.param_dtype)
    if conv.bias is not None:
        conv.bias[...] = new_bias
    else:
        conv.bias = nnx.Param(new_bias)
    conv.use_bias = True


def fuse_conv_bn(model: M, *, conv3d_as_2d: bool | None = None) -> M:
    """An eval-mode copy of `model` with the BatchNorm of every ConvModule folded into its
    conv and, with `conv3d_as_2d` (by default: when JAX runs on CPU), its 3D convs computed
    as 2D convs (see the module docstring). Outputs equal the unfused eval model's up to float rounding (measured
    <= 2e-6 x max|output| on the MMAction2 fixtures in float32)."""
    fused = nnx.clone(model)
    fused.eval()
    seen: set[int] = set()
    for _, module in list(nnx.iter_modules(fused)):
        if not isinstance(module, ConvModule) or id(module) in seen:
            continue
        seen.add(id(module))
        if not isinstance(module.bn, FoldedBatchNorm):  # not fused already
            if not (isinstance(module.bn, nnx.BatchNorm)
                    and isinstance(module.conv, (nnx.Conv, Conv3dAs2d))):
                raise TypeError(f'cannot fold {type(module.bn).__name__} into '
                                f'{type(module.conv).__name__}')
            bn = module.bn
            _fold(module.conv, bn)
            module.bn = FoldedBatchNorm(bn.num_features, bn.epsilon)
    if conv3d_as_2d if conv3d_as_2d is not None else jax.default_backend() == 'cpu':
        convs_3d_as_2d(fused)
    return fused


def count_batchnorms(model: nnx.Module) -> int:
    """BatchNorms left in `model` (0 after `fuse_conv_bn` for the ResNet recognizers)."""
    return sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model))
