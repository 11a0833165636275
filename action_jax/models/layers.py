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
