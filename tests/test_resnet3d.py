"""ResNet3d (I3D) against MMAction2 1.2.0, and initialisation from torchvision checkpoints."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from action_jax.convert.mmaction2 import (CheckpointError, apply_state_dict,
                                         load_mmaction2_checkpoint)
from action_jax.convert.torchvision import init_backbone_from_torchvision
from action_jax.models.backbones.resnet3d import BasicBlock3d, Bottleneck3d, ResNet3d
from action_jax.models.builder import build_model
from action_jax.models.fuse import fuse_conv_bn
from action_jax.models.layers import ConvModule, Conv3dAs2d
from action_jax.models.io import load_pretrained
from tolerances import NETWORK_REL, SAME_NETWORK_REL, assert_close_norm

# The released I3D R50 (i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py).
I3D_R50 = dict(type='ResNet3d', depth=50, pretrained=None, pretrained2d=True,
               conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
               conv_cfg=dict(type='Conv3d'), norm_eval=False, zero_init_residual=False,
               inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)))


def fixture_model_cfg(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / 'i3d_r50s_model_cfg.json').read_text())['model']


def fixture_backbone(fixtures_dir, **changes) -> dict:
    return dict(fixture_model_cfg(fixtures_dir)['backbone'], **changes)


def abstract(cfg: dict) -> nnx.Module:
    """The model's structure and shapes, without allocating or initialising weights."""
    return nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))


def _zeros(leaf: jax.ShapeDtypeStruct):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # dropout's RNG key
        return jax.random.key(0)
    return np.zeros(leaf.shape, leaf.dtype)


def zeros_like_model(cfg: dict) -> nnx.Module:
    """A model of zeros: the structure of `cfg` without the (slow, eager) random init."""
    graphdef, state = nnx.split(abstract(cfg))
    return nnx.merge(graphdef, jax.tree.map(_zeros, state))


def out_shapes(backbone: nnx.Module, *input_shape: int):
    return jax.tree.map(lambda a: a.shape, nnx.eval_shape(
        lambda m, x: m(x), backbone, jax.ShapeDtypeStruct(input_shape, jnp.float32)))


def test_i3d_r50_parameter_count_at_400_classes():
    model = abstract(dict(type='Recognizer3D', backbone=I3D_R50,
                          cls_head=dict(type='I3DHead', num_classes=400, in_channels=2048)))
    assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == 28_043_472


def test_i3d_r50_kernels_and_output_shape():
    backbone = abstract(I3D_R50)
    assert backbone.conv1.conv.kernel.shape == (5, 7, 7, 3, 64)
    # '3x1x1': inflated blocks have a (3,1,1) conv1; the 3x3 conv2 is never inflated.
    assert [b.conv1.conv.kernel.shape[0] for b in backbone.layer2] == [3, 1, 3, 1]
    assert {b.conv2.conv.kernel.shape[:3] for b in backbone.layer3} == {(1, 3, 3)}
    # 32 frames: conv1 and pool1 halve time, pool2 halves it again.
    assert out_shapes(backbone, 1, 32, 224, 224, 3) == (1, 4, 7, 7, 2048)


def test_stage_shapes_of_the_fixture_config(fixtures_dir):
    backbone = abstract(fixture_backbone(fixtures_dir, out_indices=(0, 1)))
    x = jax.ShapeDtypeStruct((2, 8, 64, 64, 3), jnp.float32)
    stem = nnx.eval_shape(lambda m, x: m.conv1(x), backbone, x)
    assert stem.shape == (2, 4, 32, 32, 16)
    assert nnx.eval_shape(lambda m, x: m.maxpool(x), backbone, stem).shape == (2, 2, 16, 16, 16)
    # layer1 output is taken after pool2 (2 -> 1 frames), as in MMAction2.
    assert out_shapes(backbone, 2, 8, 64, 64, 3) == ((2, 1, 16, 16, 64), (2, 1, 8, 8, 128))


@pytest.mark.parametrize('changes, block, conv1_t, conv2_t, out', [
    (dict(depth=18), BasicBlock3d, 3, 3, (1, 4, 2, 2, 64)),
    (dict(depth=18, inflate=0), BasicBlock3d, 1, 1, (1, 4, 2, 2, 64)),
    (dict(inflate_style='3x3x3'), Bottleneck3d, 1, 3, (1, 4, 2, 2, 256)),
    # 'caffe' strides conv1; a dilated stage keeps its spatial size.
    (dict(style='caffe', spatial_strides=(1, 2, 1, 1), dilations=(1, 1, 2, 2)), Bottleneck3d,
     3, 1, (1, 4, 8, 8, 256)),
    (dict(temporal_strides=(1, 2, 2, 2), with_pool2=False), Bottleneck3d,
     3, 1, (1, 1, 2, 2, 256)),
])
def test_block_variants(changes, block, conv1_t, conv2_t, out):
    cfg = {**dict(type='ResNet3d', depth=50, base_channels=8), **changes}
    backbone = abstract(cfg)
    first = backbone.layer2[0]
    assert isinstance(first, block)
    assert first.conv1.conv.kernel.shape[0] == conv1_t
    assert first.conv2.conv.kernel.shape[0] == conv2_t
    stride_on_conv1 = block is BasicBlock3d or changes.get('style') == 'caffe'
    strided, plain = (first.conv1, first.conv2) if stride_on_conv1 else (first.conv2, first.conv1)
    assert strided.conv.strides[1:] == (changes.get('spatial_strides', (1, 2))[1],) * 2
    assert plain.conv.strides == (1, 1, 1)
    assert out_shapes(backbone, 1, 8, 64, 64, 3) == out


def test_fixture_checkpoint_reproduces_mmaction2(fixtures_dir):
    model = zeros_like_model(fixture_model_cfg(fixtures_dir))
    assert apply_state_dict(model, load_mmaction2_checkpoint(fixtures_dir / 'i3d_r50s.pth'),
                            strict=True) == ([], [])
    model.eval()
    io = np.load(fixtures_dir / 'i3d_r50s_io.npz')
    x = jnp.asarray(io['input'].transpose(0, 1, 3, 4, 5, 2))  # N, clips, C, T, H, W -> ..., C
    feat, score = nnx.jit(lambda m, x: (m.extract_feat(x), m(x)))(model, x)
    for got, want in ((feat, io['backbone_feat'].transpose(0, 2, 3, 4, 1)),
                      (score, io['cls_score'])):
        assert_close_norm(got, want, NETWORK_REL)


def test_conv3d_as_2d_trains_and_loads_as_conv3d(fixtures_dir):
    """conv_cfg Conv3dAs2d: the MMAction2 checkpoint loads strictly into the same parameter
    paths; losses (train and eval mode) and gradients equal the Conv3d model's. Gradients are
    compared in eval mode: with batch statistics of 2 tiny clips they are so ill-conditioned
    that a 1e-7 change of the input moves some by 300%."""
    cfg = fixture_model_cfg(fixtures_dir)
    state = load_mmaction2_checkpoint(fixtures_dir / 'i3d_r50s.pth')
    models = []
    for conv in ('Conv3d', 'Conv3dAs2d'):
        backbone = dict(cfg['backbone'], conv_cfg=dict(type=conv))
        model = zeros_like_model(dict(cfg, backbone=backbone))
        assert apply_state_dict(model, state, strict=True) == ([], [])
        models.append(model)
    convs = [m.conv for _, m in nnx.iter_modules(models[1]) if isinstance(m, ConvModule)]
    assert convs and all(isinstance(c, Conv3dAs2d) for c in convs)
    x = jnp.asarray(np.load(fixtures_dir / 'i3d_r50s_io.npz')['input'].transpose(0, 1, 3, 4, 5, 2))

    def loss(model, x):
        return jnp.sum(model(x) ** 2)

    with jax.default_matmul_precision('highest'):
        for model in models:
            model.train()
        assert_close_norm(loss(models[1], x), loss(models[0], x), SAME_NETWORK_REL)
        for model in models:
            model.eval()
        (l1, g1), (l2, g2) = (nnx.value_and_grad(loss)(m, x) for m in models)
    assert_close_norm(l2, l1, SAME_NETWORK_REL)
    # ... and it folds for inference like any conv.
    assert_close_norm(loss(fuse_conv_bn(models[1]), x), l1, SAME_NETWORK_REL)
    flat1, flat2 = dict(nnx.to_flat_state(g1)), dict(nnx.to_flat_state(g2))
    assert flat1.keys() == flat2.keys()
    for key in flat1:
        want = np.asarray(flat1[key][...])
        assert_close_norm(flat2[key][...], want, SAME_NETWORK_REL, err_msg=str(key))


def test_zero_init_residual_zeroes_the_last_norm_of_each_block():
    backbone = ResNet3d(18, base_channels=4, num_stages=1, out_indices=(0,), spatial_strides=(1,),
                        temporal_strides=(1,), dilations=(1,), rngs=nnx.Rngs(0))
    for block in backbone.layer1:
        assert not block.conv2.bn.scale[...].any() and block.conv1.bn.scale[...].all()


@pytest.mark.parametrize('changes, frozen', [
    (dict(frozen_stages=1), ('conv1', 'layer1')),
    (dict(norm_eval=True), ('conv1', 'layer1', 'layer2')),
])
def test_frozen_stages_and_norm_eval(fixtures_dir, changes, frozen):
    cfg = fixture_model_cfg(fixtures_dir)
    cfg = dict(cfg, backbone=dict(cfg['backbone'], **changes),
               cls_head=dict(cfg['cls_head'], dropout_ratio=0))
    model = zeros_like_model(cfg)
    apply_state_dict(model, load_mmaction2_checkpoint(fixtures_dir / 'i3d_r50s.pth'))
    model.train()
    modes = [(path[1], bn.use_running_average) for path, bn in nnx.iter_modules(model)
             if isinstance(bn, nnx.BatchNorm) and path[0] == 'backbone']
    assert {stage for stage, in_eval in modes if in_eval} == set(frozen)
    assert {stage for stage, in_eval in modes if not in_eval} == {
        'conv1', 'layer1', 'layer2'} - set(frozen)
    if 'frozen_stages' in changes:
        x = jax.random.normal(jax.random.key(0), (1, 1, 8, 32, 32, 3))
        grads = nnx.state(nnx.jit(nnx.grad(lambda m: m(x).sum()))(model), nnx.Param)
        has_grad = [(path[1], bool(g.get_value().any())) for path, g in nnx.to_flat_state(grads)
                    if path[0] == 'backbone']
        assert {stage for stage, nonzero in has_grad if not nonzero} == set(frozen)
        assert {stage for stage, nonzero in has_grad if nonzero} == {'layer2'}


def test_unsupported_options_are_rejected():
    with pytest.raises(NotImplementedError, match='non-local'):
        abstract(dict(I3D_R50, non_local=((0, 0, 0), (0, 1, 0, 1), 0, 0)))
    with pytest.raises(NotImplementedError, match='norm_cfg'):
        abstract(dict(I3D_R50, norm_cfg=dict(type='SyncBN')))
    with pytest.raises(ValueError, match='inflate'):
        abstract(dict(I3D_R50, inflate=((1, 1), 1, 1, 1)))


# --- torchvision initialisation --------------------------------------------------------------

def torchvision_resnet(depth: int, width: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the key names and shapes of torchvision's `resnet{depth}` (random
    values; `width` scales the channels, 64 being torchvision's)."""
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    stages = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    gen = torch.Generator().manual_seed(seed)
    sd = {}

    def conv_bn(conv: str, bn: str, out_c: int, in_c: int, k: int) -> None:
        sd[f'{conv}.weight'] = torch.randn(out_c, in_c, k, k, generator=gen)
        sd[f'{bn}.weight'] = torch.rand(out_c, generator=gen) + 0.5
        sd[f'{bn}.bias'] = torch.randn(out_c, generator=gen)
        sd[f'{bn}.running_mean'] = torch.randn(out_c, generator=gen)
        sd[f'{bn}.running_var'] = torch.rand(out_c, generator=gen) + 0.5
        sd[f'{bn}.num_batches_tracked'] = torch.tensor(7)

    conv_bn('conv1', 'bn1', width, 3, 7)
    inplanes = width
    for stage, num_blocks in enumerate(stages):
        planes = width * 2**stage
        for b in range(num_blocks):
            name = f'layer{stage + 1}.{b}'
            convs = ([(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
                     if bottleneck else [(planes, inplanes, 3), (planes, planes, 3)])
            for k, shape in enumerate(convs, 1):
                conv_bn(f'{name}.conv{k}', f'{name}.bn{k}', *shape)
            if b == 0 and (stage > 0 or inplanes != planes * expansion):
                conv_bn(f'{name}.downsample.0', f'{name}.downsample.1', planes * expansion,
                        inplanes, 1)
            inplanes = planes * expansion
    sd['fc.weight'] = torch.randn(1000, inplanes, generator=gen)
    sd['fc.bias'] = torch.randn(1000, generator=gen)
    return sd


def expected_variables(sd: dict[str, torch.Tensor], inflate: dict[str, int] | None = None):
    """{nnx path: value} that torchvision `sd` should load as; 2D kernels OIHW -> HWIO, or
    inflated to THWIO (repeated over T, divided by T) for the T given per conv name."""
    bn_leaves = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean', 'running_var': 'var'}
    expected = {}
    for key, value in sd.items():
        *parts, leaf = key.split('.')
        if parts[0] == 'fc' or leaf == 'num_batches_tracked':
            continue
        name = '.'.join(parts)
        value = value.numpy()
        if parts[-2:-1] == ['downsample']:
            module = parts[:-1] + [['conv', 'bn'][int(parts[-1])]]
        elif parts[-1].startswith('bn'):
            module = parts[:-1] + ['conv' + parts[-1][2:], 'bn']
        else:
            module = parts + ['conv']
        if module[-1] == 'conv':
            value = value.transpose(2, 3, 1, 0)
            if inflate is not None:
                t = inflate[name]
                value = np.repeat(value[None], t, axis=0) / t
        path = tuple(int(p) if p.isdigit() else p for p in module)
        expected[path + ('kernel' if module[-1] == 'conv' else bn_leaves[leaf],)] = value
    return expected


def loaded_variables(model: nnx.Module) -> dict[tuple, np.ndarray]:
    return {path: np.asarray(v.get_value())
            for path, v in nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat)))}


@pytest.mark.parametrize('depth', [18, 50])
def test_torchvision_loads_into_resnet2d_exactly(tmp_path, depth):
    sd = torchvision_resnet(depth)
    torch.save(sd, tmp_path / 'resnet.pth')
    backbone = zeros_like_model(dict(type='ResNet', depth=depth))
    report = init_backbone_from_torchvision(backbone, tmp_path / 'resnet.pth', strict=True)
    assert (report.missing, report.unexpected, report.mismatched) == ((), (), ())
    expected = expected_variables(sd)
    loaded = loaded_variables(backbone)
    assert loaded.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(loaded[path], value, err_msg=str(path))


def inflation_of(backbone: ResNet3d) -> dict[str, int]:
    """Temporal kernel size of every conv, by torchvision name."""
    out = {}
    for path, module in nnx.iter_modules(backbone):
        if isinstance(module, nnx.Conv):
            *names, _ = map(str, path)
            if names[-1] == 'downsample':
                names.append('0')
            out['.'.join(names)] = module.kernel.shape[0]
    return out


@pytest.mark.parametrize('depth, cfg', [
    (50, dict(I3D_R50, base_channels=16)),
    (18, dict(type='ResNet3d', depth=18, base_channels=16)),
])
def test_torchvision_inflates_into_resnet3d(tmp_path, depth, cfg):
    path = tmp_path / 'resnet.pth'
    sd = torchvision_resnet(depth, width=16)
    torch.save({'state_dict': sd}, path)
    backbone = zeros_like_model(dict(cfg, pretrained=str(path)))
    load_pretrained(backbone)  # pretrained2d: MMAction2's inflate_weights
    inflation = inflation_of(backbone)
    assert set(inflation.values()) == ({5, 3, 1} if depth == 50 else {3, 1})
    expected = expected_variables(sd, inflation)
    loaded = loaded_variables(backbone)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=str(key))


def test_torchvision_reports_what_does_not_fit(tmp_path, caplog):
    sd = torchvision_resnet(50, width=16)
    sd['layer1.0.bn1.wieght'] = sd.pop('layer1.0.bn1.weight')
    torch.save(sd, tmp_path / 'resnet.pth')
    # Two stages (layer3/4 are extra) and a 2-channel (flow) stem that the RGB conv1 cannot fit.
    cfg = dict(type='ResNet3d', depth=50, base_channels=16, in_channels=2, num_stages=2,
               out_indices=(1,), spatial_strides=(1, 2), temporal_strides=(1, 1),
               dilations=(1, 1))
    backbone = zeros_like_model(cfg)
    with pytest.raises(CheckpointError, match=r'layer1\.0\.bn1\.wieght'):
        init_backbone_from_torchvision(backbone, tmp_path / 'resnet.pth', strict=True)
    assert not any(v.any() for v in loaded_variables(backbone).values())  # left unchanged

    report = init_backbone_from_torchvision(backbone, tmp_path / 'resnet.pth')
    assert report.missing == ('layer1.0.bn1.weight',)
    assert report.mismatched == ('conv1.weight',)
    assert set(report.unexpected) == {'layer1.0.bn1.wieght'} | {
        k for k in sd if k.startswith(('layer3', 'layer4')) and 'num_batches' not in k}
    assert 'layer1.0.bn1.wieght' in caplog.text and 'conv1.weight' in caplog.text
    assert not backbone.conv1.conv.kernel[...].any()
    assert backbone.layer1[0].conv1.bn.bias[...].any()


def test_3d_pretrained_loads_into_i3d_and_a_missing_key_is_an_error(fixtures_dir, tmp_path):
    """`pretrained2d=False`: the backbone's `pretrained` is an MMAction2 3D checkpoint (here a
    whole recognizer's, whose `backbone.*` entries are taken), loaded strictly, as
    build_recognizer does for main, init_recognizer and export."""
    from action_jax.models.io import build_recognizer
    path = fixtures_dir / 'i3d_r50s.pth'
    cfg = fixture_model_cfg(fixtures_dir)
    model = build_recognizer(dict(cfg, backbone=dict(cfg['backbone'], pretrained=str(path),
                                                     pretrained2d=False)))
    reference = zeros_like_model(cfg['backbone'])
    state = load_mmaction2_checkpoint(path)
    apply_state_dict(reference, {k.removeprefix('backbone.'): v for k, v in state.items()
                                 if k.startswith('backbone.')})
    # Copies of the same float32 arrays: equal exactly.
    for ours, ref in zip(jax.tree.leaves(nnx.state(model.backbone, nnx.Param, nnx.BatchStat)),
                         jax.tree.leaves(nnx.state(reference, nnx.Param, nnx.BatchStat))):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))

    missing = tmp_path / 'missing.pth'
    torch.save({'state_dict': {k: torch.from_numpy(np.array(v)) for k, v in state.items()
                               if k != 'backbone.conv1.conv.weight'}}, missing)
    with pytest.raises(CheckpointError, match='conv1/conv/kernel'):
        build_recognizer(dict(cfg, backbone=dict(cfg['backbone'], pretrained=str(missing),
                                                 pretrained2d=False)))
