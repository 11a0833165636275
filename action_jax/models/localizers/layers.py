"""Layers shared by the localizers: PyTorch-initialised convs/linears, Sequential as a list.

The localizers keep PyTorch's default initialisation (MMAction2 never re-initialises them):
weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * prod(kernel).
Sequential containers are `nnx.List`s in PyTorch's index order, activation functions included,
so parameter paths read like the state_dict keys (`x_1d_b.0.weight` -> ('x_1d_b', 0, 'kernel')).
"""
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in).
torch_default_kernel_init = nnx.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


class Buffer(nnx.Variable):
    """A constant that lives with the model but is not trained (PyTorch's buffers)."""


def _torch_default_bias_init(fan_in: int) -> Callable:
    bound = 1 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


def conv(in_channels: int, out_channels: int, kernel_size: Sequence[int], padding: int = 0,
         groups: int = 1, *, dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
    """A stride-1 Conv{1,2,3}d with bias, on channels-last inputs."""
    fan_in = in_channels // groups * math.prod(kernel_size)
    return nnx.Conv(in_channels, out_channels, tuple(kernel_size),
                    padding=((padding, padding),) * len(kernel_size),
                    feature_group_count=groups, kernel_init=torch_default_kernel_init,
                    bias_init=_torch_default_bias_init(fan_in), dtype=dtype, rngs=rngs)


def linear(in_features: int, out_features: int, *, dtype=jnp.float32,
           rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=torch_default_kernel_init,
                      bias_init=_torch_default_bias_init(in_features), dtype=dtype, rngs=rngs)


def sequential(layers: Sequence[Callable], x: jax.Array) -> jax.Array:
    for layer in layers:
        x = layer(x)
    return x


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param elements)."""
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
