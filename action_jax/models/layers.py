"""Building blocks shared by the 2D and 3D backbones.

Attribute names follow MMAction2's modules (`conv`, `bn`) so that checkpoint conversion is a
mechanical rename plus a kernel transpose.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# mmcv's kaiming_init(mode='fan_out', nonlinearity='relu', distribution='normal').
kaiming_fan_out = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (value,) * n


class ConvModule(nnx.Module):
    """Conv without bias -> BatchNorm -> optional ReLU (MMAction2's ConvModule).

    The number of spatial dims (2D or 3D) follows `len(kernel_size)`. BatchNorm matches
    PyTorch's defaults: momentum 0.1 (Flax's 0.9) and eps 1e-5.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 act: bool = True, *, dilation: int | Sequence[int] = 1,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        nd = len(kernel_size)
        self.conv = nnx.Conv(in_channels, out_channels, tuple(kernel_size),
                             strides=_tuple(stride, nd),
                             padding=tuple((p, p) for p in _tuple(padding, nd)),
                             kernel_dilation=_tuple(dilation, nd),
                             use_bias=False, kernel_init=kaiming_fan_out,
                             dtype=dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(out_channels, momentum=0.9, epsilon=1e-5, dtype=dtype,
                                rngs=rngs)
        self.act = act

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = self.bn(self.conv(x))
        return nnx.relu(x) if self.act else x


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int],
             padding: Sequence[tuple[int, int]]) -> jax.Array:
    """Max pooling over the axes between batch and channels with explicit (low, high)
    padding of -inf, as PyTorch's MaxPool pads.

    The padding is a jnp.pad and the pool is VALID, window_shape passed by keyword: jax2onnx's
    converter for nnx.max_pool takes string paddings only (explicit pairs come out as VALID,
    silently) and window_shape only by keyword.
    """
    pad = ((0, 0), *padding, (0, 0))
    return nnx.max_pool(jnp.pad(x, pad, constant_values=-jnp.inf),
                        window_shape=tuple(window_shape), strides=tuple(strides),
                        padding='VALID')


class Conv3dAs2d(nnx.Module):
    """A channels-last 3D convolution computed as one 2D convolution: XLA:CPU (jaxlib 0.10.2)
    runs 3D convolutions 2-3x slower than the same work as 2D ones, and I3D's (5, 7, 7) stem
    on 3 channels about 6x slower. Holds the `kernel` [kt, kh, kw, I, O] and `bias` of the
    `nnx.Conv` it wraps (same variables, same parameter paths), so it trains and loads
    checkpoints as that conv does.

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
        self.bias = nnx.data(conv.bias)  # data even when None: fuse_conv_bn may set it
        self.use_bias = conv.use_bias
        self.in_features, self.out_features = conv.in_features, conv.out_features
        self.kernel_size = tuple(conv.kernel_size)
        self.strides = _triple(conv.strides)
        self.padding = tuple(tuple(p) for p in conv.padding)
        self.kernel_dilation = _triple(conv.kernel_dilation)
        self.dtype, self.param_dtype = conv.dtype, conv.param_dtype
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


def _triple(value: int | Sequence[int] | None) -> tuple[int, ...]:
    return _tuple(1 if value is None else value, 3)


def convs_3d_as_2d(model: nnx.Module) -> None:
    """Computes every ConvModule's 3D conv in `model` as a 2D convolution (`Conv3dAs2d`), in
    place; the parameters stay where they are."""
    for _, module in nnx.iter_modules(model):
        if isinstance(module, ConvModule) and Conv3dAs2d.supports(module.conv):
            module.conv = Conv3dAs2d(module.conv)
