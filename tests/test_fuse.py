"""fuse_conv_bn: the BN-folded model equals the unfolded eval model (MMAction2 fixtures)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from action_jax.convert.mmaction2 import apply_state_dict, load_mmaction2_checkpoint
from action_jax.models.builder import build_model
from action_jax.models.fuse import FoldedBatchNorm, count_batchnorms, fuse_conv_bn
from action_jax.models.layers import ConvModule, Conv3dAs2d
from tolerances import EPS_BF16, NETWORK_REL, SAME_NETWORK_REL, assert_close_norm


def fixture_model(fixtures_dir, name: str) -> nnx.Module:
    cfg = json.loads((fixtures_dir / f'{name}_model_cfg.json').read_text())['model']
    model = build_model(cfg, rngs=nnx.Rngs(1))
    apply_state_dict(model, load_mmaction2_checkpoint(fixtures_dir / f'{name}.pth'))
    model.eval()
    return model


def fixture_input(fixtures_dir, name: str) -> jax.Array:
    x = np.load(fixtures_dir / f'{name}_io.npz')['input']
    # [N, segments, C, H, W] (2D) / [N, views, C, T, H, W] (3D) -> channels-last
    axes = (0, 1, 3, 4, 2) if x.ndim == 5 else (0, 1, 3, 4, 5, 2)
    return jnp.asarray(x.transpose(axes))


@pytest.mark.parametrize('name,conv3d_as_2d', [('tsn_r50s', True), ('tsm_r50s', True),
                                               ('i3d_r50s', True), ('i3d_r50s', False)])
def test_folded_equals_unfolded(fixtures_dir, name, conv3d_as_2d):
    model = fixture_model(fixtures_dir, name)
    x = fixture_input(fixtures_dir, name)
    assert x.shape[-2] == 64
    fused = fuse_conv_bn(model, conv3d_as_2d=conv3d_as_2d)

    assert count_batchnorms(model) > 0 and count_batchnorms(fused) == 0
    convs = [m for _, m in nnx.iter_modules(fused) if isinstance(m, ConvModule)]
    assert convs and all(isinstance(m.bn, FoldedBatchNorm) and m.conv.use_bias for m in convs)
    as_2d = sum(isinstance(m.conv, Conv3dAs2d) for m in convs)
    assert as_2d == (len(convs) if name == 'i3d_r50s' and conv3d_as_2d else 0)
    if name == 'tsm_r50s':
        shifted = [m for m in convs if type(m).__name__ == 'TemporalShiftConv']
        assert len(shifted) == 7
    # The original is untouched.
    assert all(isinstance(m.bn, nnx.BatchNorm)
               for _, m in nnx.iter_modules(model) if isinstance(m, ConvModule))

    with jax.default_matmul_precision('highest'):
        feat, feat_fused = model.extract_feat(x), fused.extract_feat(x)
        score, score_fused = model(x), fused(x)
        pred, pred_fused = model.predict_scores(x), fused.predict_scores(x)
    for ref, ours in ((feat, feat_fused), (score, score_fused), (pred, pred_fused)):
        assert_close_norm(ours, ref, SAME_NETWORK_REL)
    # ... and both still match MMAction2.
    io = np.load(fixtures_dir / f'{name}_io.npz')
    ref = io['cls_score']
    assert_close_norm(score_fused.reshape(ref.shape), ref, NETWORK_REL)


def test_folded_model_is_inference_only(fixtures_dir):
    fused = fuse_conv_bn(fixture_model(fixtures_dir, 'tsn_r50s'))
    x = fixture_input(fixtures_dir, 'tsn_r50s')
    fused.train()
    with pytest.raises(RuntimeError, match='fuse_conv_bn'):
        fused(x)
    fused.eval()
    assert fused(x).shape == (x.shape[0], 10)
    # Fusing a fused model changes nothing.
    again = fuse_conv_bn(fused)
    np.testing.assert_array_equal(again.backbone.conv1.conv.kernel[...],
                                  fused.backbone.conv1.conv.kernel[...])


def test_folding_under_jit_and_bf16(fixtures_dir):
    """The folded model runs under nnx.jit, and with a bf16 compute dtype stays close."""
    cfg = json.loads((fixtures_dir / 'tsn_r50s_model_cfg.json').read_text())['model']
    model = build_model(cfg, rngs=nnx.Rngs(1), dtype=jnp.bfloat16)
    apply_state_dict(model, load_mmaction2_checkpoint(fixtures_dir / 'tsn_r50s.pth'))
    model.eval()
    fused = fuse_conv_bn(model)
    x = fixture_input(fixtures_dir, 'tsn_r50s')
    ref = np.asarray(nnx.jit(lambda m, v: m.extract_feat(v))(model, x), np.float32)
    ours = np.asarray(nnx.jit(lambda m, v: m.extract_feat(v))(fused, x), np.float32)
    # bfloat16 (eps 2**-7): each of the ~22 convs rounds its folded kernel and its output to
    # other bfloat16 values (2**-8 each), a random walk of ~sqrt(44) * 2**-8 = 2.6e-2 (seen:
    # 2.3e-2); a wrong fold (the variance for the deviation, a lost mean) is order 1.
    assert_close_norm(ours, ref, 8 * EPS_BF16)


@pytest.mark.parametrize('kernel,stride,padding,dilation', [
    ((1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1)),
    ((1, 3, 3), (2, 2, 2), (0, 2, 2), (1, 2, 2)),
    ((1, 1, 1), (1, 2, 2), (0, 0, 0), (1, 1, 1)),
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), (1, 1, 1)),
    ((3, 1, 1), (2, 2, 2), (2, 0, 0), (2, 1, 1)),
    ((3, 1, 1), (1, 2, 2), (1, 1, 1), (1, 1, 1)),
    ((1, 3, 3), (2, 1, 1), (1, 1, 1), (1, 1, 1)),
    ((5, 7, 7), (2, 2, 2), (2, 3, 3), (1, 1, 1)),
    ((3, 3, 3), (1, 2, 2), (2, 1, 1), (2, 1, 1)),
])
def test_conv3d_as_2d_equals_conv3d(kernel, stride, padding, dilation):
    conv = nnx.Conv(6, 5, kernel, strides=stride, padding=tuple((p, p) for p in padding),
                    kernel_dilation=dilation, use_bias=True,
                    bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    assert Conv3dAs2d.supports(conv)
    x = jax.random.normal(jax.random.key(1), (2, 5, 9, 7, 6))
    with jax.default_matmul_precision('highest'):
        ref, ours = conv(x), Conv3dAs2d(conv)(x)
    # One conv (K <= 6 * 245 terms) summed in another order: ~sqrt(K) eps ~ 5e-6 of its terms.
    assert_close_norm(ours, ref, SAME_NETWORK_REL)


def test_conv3d_as_2d_supports():
    rngs = nnx.Rngs(0)
    assert Conv3dAs2d.supports(nnx.Conv(3, 4, (5, 7, 7), padding=((2, 2),) * 3, rngs=rngs))
    assert not Conv3dAs2d.supports(nnx.Conv(3, 4, (3, 3, 3), rngs=rngs))  # 'SAME'
    assert not Conv3dAs2d.supports(nnx.Conv(4, 4, (1, 3, 3), padding=((0, 0),) * 3,
                                            feature_group_count=2, rngs=rngs))
    assert not Conv3dAs2d.supports(nnx.Conv(3, 4, (3, 3), padding=((1, 1),) * 2, rngs=rngs))
