"""TSM backbone: ResNet with temporal shifts, as MMAction2's `backbones/resnet_tsm.py`.

Frames of a clip sit consecutively on the batch axis ([N * T, H, W, C]). MMAction2 wraps the
shifted modules (`conv1.conv.net`, `layer2.net`); here the parameters keep the plain ResNet
paths and the converter drops `.net` from checkpoint keys.
Not implemented: non-local blocks (`non_local_cfg`).
"""
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.models.backbones.resnet import ResNet
from action_jax.models.layers import ConvModule, max_pool


def temporal_shift(x: jax.Array, num_segments: int, shift_div: int = 8) -> jax.Array:
    """TSM's shift on [N * T, H, W, C]: channels [0, fold) take frame t + 1, channels
    [fold, 2 * fold) take frame t - 1 (zeros past the clip ends), the rest stay."""
    nt, h, w, c = x.shape
    x = x.reshape(nt // num_segments, num_segments, h, w, c)
    fold = c // shift_div
    no_pad = [(0, 0)] * 3
    from_next = jnp.pad(x[:, 1:, ..., :fold], [(0, 0), (0, 1)] + no_pad)
    from_prev = jnp.pad(x[:, :-1, ..., fold:2 * fold], [(0, 0), (1, 0)] + no_pad)
    out = jnp.concatenate([from_next, from_prev, x[..., 2 * fold:]], axis=-1)
    return out.reshape(nt, h, w, c)


def temporal_max_pool(x: jax.Array, num_segments: int) -> jax.Array:
    """MaxPool3d over time, kernel 3, stride 2, padding 1: [N * T, ...] -> [N * T / 2, ...]."""
    nt, h, w, c = x.shape
    x = x.reshape(nt // num_segments, num_segments, h, w, c)
    x = max_pool(x, (3, 1, 1), (2, 1, 1), ((1, 1), (0, 0), (0, 0)))
    return x.reshape(-1, h, w, c)


class TemporalShiftConv(ConvModule):
    """A block's `conv1` (conv -> BN -> ReLU) with the temporal shift applied to its input.

    MMAction2 wraps `conv1.conv` in TemporalShift; adopting the wrapped ConvModule's `conv` and
    `bn` keeps their parameter paths (and it is still a ConvModule to name-based loaders).
    """

    def __init__(self, conv_module: ConvModule, num_segments: int, shift_div: int):
        self.conv = conv_module.conv
        self.bn = conv_module.bn
        self.act = conv_module.act
        self.num_segments = num_segments
        self.shift_div = shift_div

    def __call__(self, x: jax.Array) -> jax.Array:
        return super().__call__(temporal_shift(x, self.num_segments, self.shift_div))


class ResNetTSM(ResNet):
    """ResNet with temporal shifts.

    shift_place 'blockres' shifts the input of each residual branch (before `conv1`; the
    shortcut sees the unshifted tensor), every other block when layer3 has >= 23 blocks
    (ResNet-101/152); 'block' shifts the input of every whole block. `temporal_pool` halves
    the frames with a temporal max-pool before layer2.
    """

    def __init__(self, depth: int, num_segments: int = 8, is_shift: bool = True,
                 non_local: Sequence = (0, 0, 0, 0), non_local_cfg: Mapping | None = None,
                 shift_div: int = 8, shift_place: str = 'blockres',
                 temporal_pool: bool = False, pretrained2d: bool = True, *,
                 dtype=jnp.float32, rngs: nnx.Rngs, **kwargs):
        if non_local_cfg:
            raise NotImplementedError('ResNetTSM: non-local blocks are not implemented')
        if shift_place not in ('block', 'blockres'):
            raise NotImplementedError(f'shift_place {shift_place!r}')
        super().__init__(depth, dtype=dtype, rngs=rngs, **kwargs)
        if temporal_pool and self.num_stages < 2:
            raise ValueError('temporal_pool pools before layer2, which needs num_stages >= 2')
        if temporal_pool and num_segments // 2 <= 0:
            raise ValueError('num_segments // 2 must be positive with temporal_pool')
        self.num_segments = num_segments
        self.is_shift = is_shift
        self.shift_div = shift_div
        self.shift_place = shift_place
        self.temporal_pool = temporal_pool
        self.pretrained2d = pretrained2d
        # Frames per clip seen by each stage: the temporal pool halves them from layer2 on.
        self.stage_segments = tuple(
            num_segments // 2 if temporal_pool and i > 0 else num_segments
            for i in range(self.num_stages))
        if is_shift and shift_place == 'blockres':
            self._shift_residual_branches()

    def _shift_residual_branches(self) -> None:
        # MMAction2 tests `len(layer3) >= 23`; with fewer stages there is no layer3.
        n_round = 2 if self.num_stages >= 3 and len(self.layer3) >= 23 else 1
        for i in range(self.num_stages):
            for j, block in enumerate(self.res_layer(i)):
                if j % n_round == 0:
                    block.conv1 = TemporalShiftConv(block.conv1, self.stage_segments[i],
                                                    self.shift_div)

    def forward_stage(self, i: int, x: jax.Array) -> jax.Array:
        if self.temporal_pool and i == 1:
            x = temporal_max_pool(x, self.num_segments)
        for block in self.res_layer(i):
            if self.is_shift and self.shift_place == 'block':
                x = temporal_shift(x, self.stage_segments[i], self.shift_div)
            x = block(x)
        return x
