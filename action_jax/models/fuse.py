"""Fold BatchNorm into the preceding convolution for inference.

    fused = fuse_conv_bn(model)      # eval-only copy; `model` is left untouched
    scores = fused.predict(x)

Every `ConvModule` (conv without bias -> BatchNorm -> optional ReLU), 2D or 3D, including
TSM's `TemporalShiftConv` (the shift still runs on the conv's input), becomes a conv with a
bias that holds the BatchNorm's running statistics and affine parameters:

    s = scale / sqrt(var + eps)
    kernel' = kernel * s             (per output channel)
    bias'   = bias - mean * s

and its `bn` becomes `FoldedBatchNorm`, an identity with no state. Nothing in `layers.py`
changes: `ConvModule.__call__` still runs `bn(conv(x))`. The folding is done in float64 on
the host and stored in each conv's `param_dtype`.

With `conv3d_as_2d` (the default), every folded 3D conv also becomes a `Conv3dAs2d`: the
same kernel and bias (same parameter paths), computed as a single 2D convolution. XLA:CPU
(jaxlib 0.10.2) runs 3D convolutions 2-3x slower than the equivalent 2D ones, and I3D's
(5, 7, 7) stem on 3 channels about 6x slower.

The copy is for inference only. `model.train()` marks the `FoldedBatchNorm`s as training
(as for any BatchNorm), and a forward pass then raises: batch statistics cannot be
recovered once folded. BatchNorms outside `ConvModule`s are left as they are.
"""
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.models.layers import ConvModule

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


def _fold(conv: nnx.Conv, bn: nnx.BatchNorm) -> None:
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


class Conv3dAs2d(nnx.Module):
    """A channels-last 3D convolution computed as one 2D convolution, as XLA:CPU runs 3D
    convolutions several times slower than 2D ones. Holds `kernel` [kt, kh, kw, I, O] and
    `bias` like the `nnx.Conv` it replaces (same parameter paths).

      (1, kh, kw):   frames folded into the batch, then a (kh, kw) conv.
      (kt, 1, 1):    a (kt, 1) conv over (T, H * W).
      (kt, kh, kw):  the kt temporal taps stacked on the channels (kt * I), frames folded
                     into the batch, then a (kh, kw) conv with the kernel reshaped to
                     [kh, kw, kt * I, O] (e.g. I3D's (5, 7, 7) stem on 3 channels).
    """

    def __init__(self, conv: nnx.Conv):
        if not self.supports(conv):
            raise ValueError('Conv3dAs2d needs a 3D nnx.Conv without groups, mask, input '
                             'dilation or string padding')
        self.kernel = conv.kernel
        self.bias = conv.bias
        self.use_bias = conv.use_bias
        self.in_features, self.out_features = conv.in_features, conv.out_features
        self.kernel_size = tuple(conv.kernel_size)
        self.strides = _triple(conv.strides)
        self.padding = tuple(tuple(p) for p in conv.padding)
        self.kernel_dilation = _triple(conv.kernel_dilation)
        self.dtype = conv.dtype
        self.precision = conv.precision
        self.promote_dtype = conv.promote_dtype

    @staticmethod
    def supports(conv: nnx.Module) -> bool:
        return (isinstance(conv, nnx.Conv) and len(conv.kernel_size) == 3
                and conv.feature_group_count == 1 and conv.mask is None
                and _triple(conv.input_dilation) == (1, 1, 1)
                and not isinstance(conv.padding, str) and len(conv.padding) == 3)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 5:
            raise ValueError(f'Conv3dAs2d expects [N, T, H, W, C], got shape {x.shape}')
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        x, kernel, bias = self.promote_dtype((x, kernel, bias), dtype=self.dtype)
        kt, kh, kw, cin, cout = kernel.shape
        (st, sh, sw), (dt, dh, dw) = self.strides, self.kernel_dilation
        pad_t, pad_h, pad_w = self.padding
        dims = ('NHWC', 'HWIO', 'NHWC')
        if kh == kw == 1 and kt > 1:  # a (kt, 1) conv over (T, H * W)
            x = jnp.pad(x, ((0, 0), (0, 0), pad_h, pad_w, (0, 0)))[:, :, ::sh, ::sw]
            n, t, h, w, c = x.shape
            y = jax.lax.conv_general_dilated(
                x.reshape(n, t, h * w, c), kernel[:, 0], (st, 1), (pad_t, (0, 0)),
                rhs_dilation=(dt, 1), dimension_numbers=dims, precision=self.precision)
            y = y.reshape(n, y.shape[1], h, w, cout)
        else:  # temporal taps on the channels, frames into the batch
            x = jnp.pad(x, ((0, 0), pad_t, (0, 0), (0, 0), (0, 0)))
            t_out = (x.shape[1] - dt * (kt - 1) - 1) // st + 1
            taps = [x[:, i * dt:i * dt + st * (t_out - 1) + 1:st] for i in range(kt)]
            x = taps[0] if kt == 1 else jnp.concatenate(taps, axis=-1)
            n, t, h, w, c = x.shape
            kernel_2d = kernel.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * cin, cout)
            y = jax.lax.conv_general_dilated(
                x.reshape(n * t, h, w, c), kernel_2d, (sh, sw), (pad_h, pad_w),
                rhs_dilation=(dh, dw), dimension_numbers=dims, precision=self.precision)
            y = y.reshape(n, t, *y.shape[1:])
        if bias is not None:
            y = y + bias
        return y


def _triple(value) -> tuple[int, ...]:
    if value is None:
        return (1, 1, 1)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


def fuse_conv_bn(model: M, *, conv3d_as_2d: bool = True) -> M:
    """An eval-mode copy of `model` with the BatchNorm of every ConvModule folded into its
    conv and, with `conv3d_as_2d`, its 3D convs computed as 2D convs (see the module
    docstring). Outputs equal the unfused eval model's up to float rounding (measured
    <= 2e-6 x max|output| on the MMAction2 fixtures in float32)."""
    fused = nnx.clone(model)
    fused.eval()
    seen: set[int] = set()
    for _, module in list(nnx.iter_modules(fused)):
        if not isinstance(module, ConvModule) or id(module) in seen:
            continue
        seen.add(id(module))
        if not isinstance(module.bn, FoldedBatchNorm):  # not fused already
            if not isinstance(module.bn, nnx.BatchNorm) or not isinstance(module.conv,
                                                                          nnx.Conv):
                raise TypeError(f'cannot fold {type(module.bn).__name__} into '
                                f'{type(module.conv).__name__}')
            bn = module.bn
            _fold(module.conv, bn)
            module.bn = FoldedBatchNorm(bn.num_features, bn.epsilon)
        if conv3d_as_2d and Conv3dAs2d.supports(module.conv):
            module.conv = Conv3dAs2d(module.conv)
    return fused


def count_batchnorms(model: nnx.Module) -> int:
    """BatchNorms left in `model` (0 after `fuse_conv_bn` for the ResNet recognizers)."""
    return sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model))
