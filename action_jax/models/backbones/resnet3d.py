"""ResNet3d: a ResNet whose 2D convolutions are inflated to 3D (I3D, Carreira & Zisserman 2017).

Follows MMAction2 1.2.0's `ResNet3d` (`mmaction/models/backbones/resnet3d.py`) in shapes,
padding and module names, channels-last: input [N, T, H, W, C]. Blocks are inflated one by
one (`inflate`); an inflated Bottleneck puts its temporal kernel on conv1 ('3x1x1') or on
conv2 ('3x3x3'). `frozen_norms()` lists the BatchNorms that MMAction2's `ResNet3d.train`
keeps in eval mode (`frozen_stages`, `norm_eval`); the recognizer's `train()` applies it.
"""
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.models.backbones.resnet import ResidualBlock
from action_jax.models.layers import ConvModule, convs_3d_as_2d, max_pool

# Config types that this port implements; MMAction2 configs may name them explicitly.
_SUPPORTED_LAYER_TYPES = {'conv_cfg': ('Conv3d', 'Conv3dAs2d'), 'norm_cfg': ('BN3d',),
                          'act_cfg': ('ReLU',)}


def _check_layer_cfgs(**cfgs: Mapping | None) -> None:
    for name, cfg in cfgs.items():
        if cfg is not None and (cfg.get('type') not in _SUPPORTED_LAYER_TYPES[name]
                                or not cfg.get('requires_grad', True)):
            raise NotImplementedError(f'{name}={dict(cfg)}: only types '
                                      f'{_SUPPORTED_LAYER_TYPES[name]} with requires_grad')


def _check_style(style: str, inflate_style: str) -> None:
    if style not in ('pytorch', 'caffe'):
        raise ValueError(f"style must be 'pytorch' or 'caffe', got {style!r}")
    if inflate_style not in ('3x1x1', '3x3x3'):
        raise ValueError(f"inflate_style must be '3x1x1' or '3x3x3', got {inflate_style!r}")


def _per_stage(value: int | Sequence, num_stages: int) -> tuple:
    """MMAction2's `_ntuple`: an int applies to every stage, a sequence is taken as is."""
    return (value,) * num_stages if isinstance(value, int) else tuple(value)


class MaxPool3d(nnx.Module):
    """Parameter-free 3D max pooling; padding is -inf as in PyTorch."""

    def __init__(self, kernel_size: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int] = (0, 0, 0)):
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple((p, p) for p in padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.kernel_size, self.stride, self.padding)


class BasicBlock3d(ResidualBlock):
    """Two 3x3 convs, (3,3,3) when inflated, else (1,3,3); the stride sits on conv1.

    `style` and `inflate_style` are checked but, as in MMAction2, change nothing here.
    """
    expansion = 1

    def __init__(self, inplanes: int, planes: int, spatial_stride: int = 1,
                 temporal_stride: int = 1, dilation: int = 1,
                 downsample: ConvModule | None = None, style: str = 'pytorch',
                 inflate: bool = True, inflate_style: str = '3x1x1', with_cp: bool = False, *,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        _check_style(style, inflate_style)
        kt = 3 if inflate else 1
        self.conv1 = ConvModule(inplanes, planes, (kt, 3, 3),
                                stride=(temporal_stride, spatial_stride, spatial_stride),
                                padding=(kt // 2, dilation, dilation),
                                dilation=(1, dilation, dilation), dtype=dtype, rngs=rngs)
        # MMAction2 leaves conv2 undilated (padding 1) even in a dilated stage.
        self.conv2 = ConvModule(planes, planes * self.expansion, (kt, 3, 3),
                                padding=(kt // 2, 1, 1), act=False, dtype=dtype, rngs=rngs)
        self.downsample = downsample
        self.with_cp = with_cp

    def residual(self, x: jax.Array) -> jax.Array:
        return self.conv2(self.conv1(x))

    def last_norm(self) -> nnx.BatchNorm:
        return self.conv2.bn


class Bottleneck3d(ResidualBlock):
    """1x1 -> 3x3 -> 1x1 (x4 channels); inflation adds a 3-frame temporal kernel.

    '3x1x1' inflates conv1 to (3,1,1), '3x3x3' inflates conv2 to (3,3,3). Style 'pytorch'
    strides conv2, 'caffe' strides conv1.
    """
    expansion = 4

    def __init__(self, inplanes: int, planes: int, spatial_stride: int = 1,
                 temporal_stride: int = 1, dilation: int = 1,
                 downsample: ConvModule | None = None, style: str = 'pytorch',
                 inflate: bool = True, inflate_style: str = '3x1x1', with_cp: bool = False, *,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs):
        _check_style(style, inflate_style)
        stride = (temporal_stride, spatial_stride, spatial_stride)
        stride1, stride2 = ((1, 1, 1), stride) if style == 'pytorch' else (stride, (1, 1, 1))
        kt1 = 3 if inflate and inflate_style == '3x1x1' else 1
        kt2 = 3 if inflate and inflate_style == '3x3x3' else 1
        self.conv1 = ConvModule(inplanes, planes, (kt1, 1, 1), stride=stride1,
                                padding=(kt1 // 2, 0, 0), dtype=dtype, rngs=rngs)
        self.conv2 = ConvModule(planes, planes, (kt2, 3, 3), stride=stride2,
                                padding=(kt2 // 2, dilation, dilation),
                                dilation=(1, dilation, dilation), dtype=dtype, rngs=rngs)
        self.conv3 = ConvModule(planes, planes * self.expansion, (1, 1, 1), act=False,
                                dtype=dtype, rngs=rngs)
        self.downsample = downsample
        self.with_cp = with_cp

    def residual(self, x: jax.Array) -> jax.Array:
        return self.conv3(self.conv2(self.conv1(x)))

    def last_norm(self) -> nnx.BatchNorm:
        return self.conv3.bn


def make_res_layer(block: type[BasicBlock3d | Bottleneck3d], inplanes: int, planes: int,
                   num_blocks: int, spatial_stride: int = 1, temporal_stride: int = 1,
                   dilation: int = 1, style: str = 'pytorch', inflate: int | Sequence[int] = 1,
                   inflate_style: str = '3x1x1', with_cp: bool = False, *,
                   dtype: Any = jnp.float32, rngs: nnx.Rngs) -> nnx.List:
    """One stage: the first block strides (and projects the shortcut), the rest keep shape."""
    inflate = (inflate,) * num_blocks if isinstance(inflate, int) else tuple(inflate)
    if len(inflate) != num_blocks:
        raise ValueError(f'inflate {inflate} needs one entry per block ({num_blocks})')
    out_planes = planes * block.expansion
    downsample = None
    # As in MMAction2, only a spatial stride or a width change adds the projection.
    if spatial_stride != 1 or inplanes != out_planes:
        downsample = ConvModule(inplanes, out_planes, (1, 1, 1),
                                stride=(temporal_stride, spatial_stride, spatial_stride),
                                act=False, dtype=dtype, rngs=rngs)
    blocks = []
    for i, block_inflate in enumerate(inflate):
        first = i == 0
        blocks.append(block(inplanes if first else out_planes, planes,
                            spatial_stride if first else 1, temporal_stride if first else 1,
                            dilation, downsample if first else None, style,
                            block_inflate == 1, inflate_style, with_cp,
                            dtype=dtype, rngs=rngs))
    return nnx.List(blocks)


class ResNet3d(nnx.Module):
    """ResNet-18/34/50/101/152 with inflated 3D convs on [N, T, H, W, C] clips.

    stem: conv1 (`conv1_kernel`, stride (conv1_stride_t, s, s), 'same'-style padding) ->
    maxpool (1,3,3) (`with_pool1`); stages layer1.. with pool2, a (2,1,1) max-pool over time,
    after layer1 (`with_pool2`). Returns the feature map of the single `out_indices` stage,
    or a tuple for several.

    Weights start as in MMAction2 (kaiming fan_out convs, BN 1/0, the last BN of each block 0
    with `zero_init_residual`); `models/io.py` loads `pretrained` (`pretrained2d`). Non-local blocks are not
    implemented (a non-zero `non_local` raises). `conv_cfg=dict(type='Conv3dAs2d')` computes
    every 3D conv as a 2D one (layers.Conv3dAs2d): same parameters, faster on XLA:CPU.
    """

    arch_settings = {
        18: (BasicBlock3d, (2, 2, 2, 2)),
        34: (BasicBlock3d, (3, 4, 6, 3)),
        50: (Bottleneck3d, (3, 4, 6, 3)),
        101: (Bottleneck3d, (3, 4, 23, 3)),
        152: (Bottleneck3d, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int = 50, pretrained: str | None = None,
                 stage_blocks: Sequence[int] | None = None, pretrained2d: bool = True,
                 in_channels: int = 3, num_stages: int = 4, base_channels: int = 64,
                 out_indices: Sequence[int] = (3,),
                 spatial_strides: Sequence[int] = (1, 2, 2, 2),
                 temporal_strides: Sequence[int] = (1, 1, 1, 1),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 conv1_kernel: Sequence[int] = (3, 7, 7), conv1_stride_s: int = 2,
                 conv1_stride_t: int = 1, pool1_stride_s: int = 2, pool1_stride_t: int = 1,
                 with_pool1: bool = True, with_pool2: bool = True, style: str = 'pytorch',
                 frozen_stages: int = -1, inflate: int | Sequence = (1, 1, 1, 1),
                 inflate_style: str = '3x1x1', conv_cfg: Mapping | None = None,
                 norm_cfg: Mapping | None = None, act_cfg: Mapping | None = None,
                 norm_eval: bool = False, with_cp: bool = False,
                 non_local: int | Sequence = (0, 0, 0, 0), non_local_cfg: Mapping | None = None,
                 zero_init_residual: bool = True, init_cfg: Mapping | Sequence | None = None,
                 *, dtype: Any = jnp.float32, rngs: nnx.Rngs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for resnet')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'num_stages must be in [1, 4], got {num_stages}')
        if max(out_indices) >= num_stages:
            raise ValueError(f'out_indices {tuple(out_indices)} must be < num_stages '
                             f'({num_stages})')
        if not len(spatial_strides) == len(temporal_strides) == len(dilations) == num_stages:
            raise ValueError('spatial_strides, temporal_strides and dilations need one entry '
                             f'per stage (num_stages={num_stages})')
        if any(jax.tree.leaves(non_local)):
            raise NotImplementedError('non-local blocks are not implemented')
        _check_layer_cfgs(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        block, default_blocks = self.arch_settings[depth]
        stage_blocks = tuple(default_blocks[:num_stages] if stage_blocks is None
                             else stage_blocks)
        if len(stage_blocks) != num_stages:
            raise ValueError(f'stage_blocks {stage_blocks} need {num_stages} entries')
        self.depth = depth
        self.pretrained = pretrained
        self.pretrained2d = pretrained2d
        self.num_stages = num_stages
        self.stage_blocks = stage_blocks
        self.out_indices = tuple(out_indices)
        self.with_pool1 = with_pool1
        self.with_pool2 = with_pool2
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.conv1 = ConvModule(in_channels, base_channels, tuple(conv1_kernel),
                                stride=(conv1_stride_t, conv1_stride_s, conv1_stride_s),
                                padding=tuple((k - 1) // 2 for k in conv1_kernel),
                                dtype=dtype, rngs=rngs)
        self.maxpool = MaxPool3d((1, 3, 3), (pool1_stride_t, pool1_stride_s, pool1_stride_s),
                                 (0, 1, 1))
        self.pool2 = MaxPool3d((2, 1, 1), (2, 1, 1))
        inplanes = base_channels
        for i, (num_blocks, stage_inflate) in enumerate(
                zip(stage_blocks, _per_stage(inflate, num_stages))):
            planes = base_channels * 2**i
            setattr(self, f'layer{i + 1}', make_res_layer(
                block, inplanes, planes, num_blocks, spatial_strides[i], temporal_strides[i],
                dilations[i], style, stage_inflate, inflate_style, with_cp,
                dtype=dtype, rngs=rngs))
            inplanes = planes * block.expansion
        self.feat_dim = inplanes

        if conv_cfg is not None and conv_cfg.get('type') == 'Conv3dAs2d':
            convs_3d_as_2d(self)
        if zero_init_residual and pretrained is None:
            # Every block then starts as the identity map (Goyal et al., 2017).
            for _, module in nnx.iter_modules(self):
                if isinstance(module, (BasicBlock3d, Bottleneck3d)):
                    module.last_norm().scale[...] = 0.0

    def res_layer(self, i: int) -> nnx.List:
        """Stage `i` (0-based), i.e. `layer{i + 1}`."""
        return getattr(self, f'layer{i + 1}')

    def _frozen_boundary(self, x: jax.Array, stage: int) -> jax.Array:
        # Stage 0 is the stem. Cutting the graph after the last frozen stage leaves every
        # frozen parameter without gradient.
        return jax.lax.stop_gradient(x) if stage <= self.frozen_stages else x

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        x = self._frozen_boundary(self.conv1(x), 0)
        if self.with_pool1:
            x = self.maxpool(x)
        outs = []
        for i in range(self.num_stages):
            for block in self.res_layer(i):
                x = block(x)
            x = self._frozen_boundary(x, i + 1)
            if i == 0 and self.with_pool2:
                x = self.pool2(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def frozen_norms(self) -> list[nnx.BatchNorm]:
        """BatchNorms that training mode keeps on running statistics (MMAction2's
        `_freeze_stages` and `norm_eval`)."""
        stages = [self.conv1] + [self.res_layer(i) for i in range(self.num_stages)]
        frozen = stages if self.norm_eval else stages[:self.frozen_stages + 1]
        return [m for stage in frozen for _, m in nnx.iter_modules(stage)
                if isinstance(m, nnx.BatchNorm)]
