"""2D ResNet backbone (TSN), as MMAction2's `backbones/resnet.py`, channels-last.

Module names follow MMAction2 (`conv1`, `layer1[0].conv2`, `downsample`), so MMAction2
checkpoints load by name. `frozen_norms()` lists the BatchNorms that MMAction2's `ResNet.train`
keeps in eval mode (`frozen_stages`, `norm_eval`, `partial_bn`); the recognizer's `train()`
applies it.
"""
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.models.layers import ConvModule, max_pool

# Config types that this port implements; MMAction2 configs may name them explicitly.
_SUPPORTED_LAYER_TYPES = {'conv_cfg': ('Conv', 'Conv2d'), 'norm_cfg': ('BN', 'BN2d'),
                          'act_cfg': ('ReLU',)}


def check_layer_cfgs(**cfgs: Mapping | None) -> None:
    """Reject conv/norm/act configs that differ from what the port implements."""
    for name, cfg in cfgs.items():
        if cfg is None:
            continue
        if cfg.get('type') not in _SUPPORTED_LAYER_TYPES[name]:
            raise NotImplementedError(f'{name}={dict(cfg)}: only types '
                                      f'{_SUPPORTED_LAYER_TYPES[name]} are supported')
        if not cfg.get('requires_grad', True):
            raise NotImplementedError(f'{name}: requires_grad=False is not supported; '
                                      'freeze parameters with an optimizer mask instead')


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """The stem's MaxPool2d(3, stride 2, padding 1); padding is -inf as in PyTorch."""
    return max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))


def _residual_sum(block: 'ResidualBlock', x: jax.Array) -> jax.Array:
    identity = x if block.downsample is None else block.downsample(x)
    return block.residual(x) + identity


class ResidualBlock(nnx.Module):
    """relu(residual(x) + shortcut(x)); the sum can be rematerialised (`with_cp`)."""
    expansion = 1
    downsample: ConvModule | None
    with_cp: bool

    def residual(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        # MMAction2 checkpoints the block up to the addition; the final ReLU stays outside.
        out = (nnx.remat(_residual_sum) if self.with_cp else _residual_sum)(self, x)
        return nnx.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs; the stride and dilation sit on `conv1` (ResNet-18/34)."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: ConvModule | None = None, style: str = 'pytorch',
                 with_cp: bool = False, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style must be 'pytorch' or 'caffe', got {style!r}")
        self.conv1 = ConvModule(inplanes, planes, (3, 3), stride, dilation, dilation=dilation,
                                dtype=dtype, rngs=rngs)
        self.conv2 = ConvModule(planes, planes, (3, 3), 1, 1, act=False, dtype=dtype,
                                rngs=rngs)
        self.downsample = downsample
        self.with_cp = with_cp

    def residual(self, x: jax.Array) -> jax.Array:
        return self.conv2(self.conv1(x))


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride is on the 3x3 ('pytorch') or the first 1x1
    ('caffe')."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: ConvModule | None = None, style: str = 'pytorch',
                 with_cp: bool = False, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style must be 'pytorch' or 'caffe', got {style!r}")
        conv1_stride, conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)
        self.conv1 = ConvModule(inplanes, planes, (1, 1), conv1_stride, dtype=dtype, rngs=rngs)
        self.conv2 = ConvModule(planes, planes, (3, 3), conv2_stride, dilation,
                                dilation=dilation, dtype=dtype, rngs=rngs)
        self.conv3 = ConvModule(planes, planes * self.expansion, (1, 1), act=False,
                                dtype=dtype, rngs=rngs)
        self.downsample = downsample
        self.with_cp = with_cp

    def residual(self, x: jax.Array) -> jax.Array:
        return self.conv3(self.conv2(self.conv1(x)))


def make_res_layer(block: type[ResidualBlock], inplanes: int, planes: int, blocks: int,
                   stride: int = 1, dilation: int = 1, style: str = 'pytorch',
                   with_cp: bool = False, *, dtype=jnp.float32,
                   rngs: nnx.Rngs) -> nnx.List:
    """One stage: the first block changes stride/width (with a 1x1 conv+BN shortcut)."""
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = ConvModule(inplanes, out_planes, (1, 1), stride, act=False, dtype=dtype,
                                rngs=rngs)
    layers = [block(inplanes, planes, stride, dilation, downsample, style, with_cp,
                    dtype=dtype, rngs=rngs)]
    layers += [block(out_planes, planes, 1, dilation, None, style, with_cp, dtype=dtype,
                     rngs=rngs) for _ in range(1, blocks)]
    return nnx.List(layers)


class ResNet(nnx.Module):
    """ResNet-18/34/50/101/152 backbone on [B, H, W, C] frames.

    Returns the feature map of the single `out_indices` stage, or a tuple for several.
    Weights are initialised as MMAction2 does (kaiming fan_out convs, BN 1/0);
    `models/io.py` loads the torchvision ImageNet weights that `pretrained` names.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, pretrained: str | None = None,
                 torchvision_pretrain: bool = True, in_channels: int = 3,
                 num_stages: int = 4, out_indices: Sequence[int] = (3,),
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1), style: str = 'pytorch',
                 frozen_stages: int = -1, conv_cfg: Mapping | None = None,
                 norm_cfg: Mapping | None = None, act_cfg: Mapping | None = None,
                 norm_eval: bool = False, partial_bn: bool = False, with_cp: bool = False,
                 init_cfg: Mapping | Sequence | None = None, *, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for resnet')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'num_stages must be in [1, 4], got {num_stages}')
        if max(out_indices) >= num_stages:
            raise ValueError(f'out_indices {tuple(out_indices)} must be < num_stages '
                             f'({num_stages})')
        if not len(strides) == len(dilations) == num_stages:
            raise ValueError(f'strides {tuple(strides)} and dilations {tuple(dilations)} '
                             f'need one entry per stage (num_stages={num_stages})')
        check_layer_cfgs(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.depth = depth
        self.pretrained = pretrained
        self.torchvision_pretrain = torchvision_pretrain
        self.num_stages = num_stages
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.partial_bn = partial_bn

        block, stage_blocks = self.arch_settings[depth]
        self.conv1 = ConvModule(in_channels, 64, (7, 7), 2, 3, dtype=dtype, rngs=rngs)
        inplanes = 64
        for i, num_blocks in enumerate(stage_blocks[:num_stages]):
            planes = 64 * 2**i
            setattr(self, f'layer{i + 1}',
                    make_res_layer(block, inplanes, planes, num_blocks, strides[i],
                                   dilations[i], style, with_cp, dtype=dtype, rngs=rngs))
            inplanes = planes * block.expansion
        self.feat_dim = inplanes

    def res_layer(self, i: int) -> nnx.List:
        """Stage `i` (0-based), i.e. `layer{i + 1}`."""
        return getattr(self, f'layer{i + 1}')

    def forward_stage(self, i: int, x: jax.Array) -> jax.Array:
        for block in self.res_layer(i):
            x = block(x)
        return x

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        x = max_pool_3x3_s2(self.conv1(x))
        # Frozen stages get no gradient: cut the graph at the last frozen output.
        if self.frozen_stages >= 0:
            x = jax.lax.stop_gradient(x)
        outs = []
        for i in range(self.num_stages):
            x = self.forward_stage(i, x)
            if i < self.frozen_stages:
                x = jax.lax.stop_gradient(x)
            if i in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def frozen_norms(self) -> list[nnx.BatchNorm]:
        """BatchNorms that training mode keeps on running statistics (MMAction2's
        `_freeze_stages`, `norm_eval` and `_partial_bn`)."""
        all_bns = [m for _, m in nnx.iter_modules(self) if isinstance(m, nnx.BatchNorm)]
        if self.norm_eval:
            return all_bns
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.conv1.bn)
        for i in range(min(self.frozen_stages, self.num_stages)):
            frozen += [m for _, m in nnx.iter_modules(self.res_layer(i))
                       if isinstance(m, nnx.BatchNorm)]
        if self.partial_bn:
            # Every BN but the first one, the stem's.
            frozen += [bn for bn in all_bns if bn is not self.conv1.bn]
        return frozen
