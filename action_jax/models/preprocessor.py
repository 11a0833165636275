"""MMAction2's ActionDataPreprocessor: uint8 clips -> normalised compute-dtype inputs, on the
device inside the jitted steps (so the host ships uint8, a quarter of the bytes).

Built by the recognizer from the config's `model.data_preprocessor` dict.
"""
from collections.abc import Sequence

import jax
import jax.numpy as jnp

# MMAction2's ActionDataPreprocessor defaults (ImageNet RGB statistics on 0-255 pixels).
DEFAULT_MEAN = (123.675, 116.28, 103.53)
DEFAULT_STD = (58.395, 57.12, 57.375)
# Channels-last layouts (the pipeline's FormatShape); MMAction2's channels-first names too.
FORMATS = ('NCHW', 'NCTHW', 'NHWC', 'NTHWC')


class ActionDataPreprocessor:
    """(x - mean) / std in float32, cast to the compute dtype.

    `type`, `format_shape` and `to_float32` are accepted for config compatibility: the layout
    is the pipeline's (channels last) and the result is always in the compute dtype.
    `to_rgb` and `blending` (RGB<->BGR swaps, mixup/cutmix) are not implemented.
    A plain object, not an nnx.Module: it holds no arrays, only static numbers, and it is
    hashable so that nnx can keep it in the model's graph definition.
    """

    def __init__(self, mean: Sequence[float] | None = DEFAULT_MEAN,
                 std: Sequence[float] | None = DEFAULT_STD, format_shape: str = 'NCHW',
                 to_rgb: bool = False, to_float32: bool = True, blending=None,
                 type: str = 'ActionDataPreprocessor', *, dtype=jnp.float32):
        if type != 'ActionDataPreprocessor':
            raise NotImplementedError(f'data_preprocessor type {type!r}: only '
                                      'ActionDataPreprocessor')
        if to_rgb or blending is not None:
            raise NotImplementedError('data_preprocessor to_rgb and blending are not '
                                      'implemented')
        if format_shape not in FORMATS:
            raise ValueError(f'data_preprocessor format_shape={format_shape!r}; known: '
                             f'{", ".join(FORMATS)}')
        # mean/std None: no normalisation, as in MMAction2.
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.dtype = jnp.dtype(dtype)

    def __call__(self, imgs: jax.Array) -> jax.Array:
        x = imgs.astype(jnp.float32)
        if self.mean is not None:
            x = (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)
        return x.astype(self.dtype)

    def _key(self):
        return self.mean, self.std, self.dtype

    def __eq__(self, other):
        return isinstance(other, ActionDataPreprocessor) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())
