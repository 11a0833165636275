"""ResNet / ResNetTSM backbones, heads, recognizers and the config builder."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from action_jax.models.backbones.resnet import max_pool_3x3_s2
from action_jax.models.backbones.resnet_tsm import (TemporalShiftConv, temporal_max_pool,
                                                    temporal_shift)
from action_jax.models.builder import build_model
from action_jax.models.heads import I3DHead, TSNHead
from action_jax.models.recognizers import Recognizer3D
from tolerances import EPS32, SAME_NETWORK_REL, assert_close_norm


def fixture_cfg(fixtures_dir, name: str) -> dict:
    return json.loads((fixtures_dir / f'{name}_model_cfg.json').read_text())['model']


def with_backbone(cfg: dict, **changes) -> dict:
    return dict(cfg, backbone=dict(cfg['backbone'], **changes))


def clip(*shape: int, seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape)


def full_size(backbone: str, head: str, depth: int = 50, in_channels: int = 2048) -> dict:
    return dict(type='Recognizer2D', backbone=dict(type=backbone, depth=depth),
                cls_head=dict(type=head, num_classes=400, in_channels=in_channels))


def abstract(cfg: dict) -> nnx.Module:
    """The model's structure and shapes, without allocating or initialising weights."""
    return nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))


def param_count(cfg: dict) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(abstract(cfg), nnx.Param)))


@pytest.mark.parametrize('cfg, expected', [
    (full_size('ResNet', 'TSNHead'), 24_327_632),
    (full_size('ResNetTSM', 'TSMHead'), 24_327_632),  # the shift has no parameters
    (full_size('ResNet', 'TSNHead', depth=18, in_channels=512), 11_381_712),
])
def test_parameter_counts_at_400_classes(cfg, expected):
    assert param_count(cfg) == expected


@pytest.mark.parametrize('depth, shifted', [(50, [3, 4, 6, 3]), (101, [2, 2, 12, 2])])
def test_blockres_shift_placement(depth, shifted):
    # MMAction2 shifts every block, or every other block when layer3 has >= 23 blocks.
    backbone = abstract(full_size('ResNetTSM', 'TSMHead', depth=depth)).backbone
    assert [sum(isinstance(b.conv1, TemporalShiftConv) for b in backbone.res_layer(i))
            for i in range(4)] == shifted


def test_temporal_shift_matches_mmaction2(fixtures_dir):
    stages = np.load(fixtures_dir / 'tsm_r50s_stages.npz')
    pre = stages['pre_shift'].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    post = temporal_shift(jnp.asarray(pre), num_segments=4, shift_div=8)
    np.testing.assert_array_equal(np.asarray(post), stages['post_shift'].transpose(0, 2, 3, 1))


def test_temporal_shift_direction():
    # Frame t of clip n holds 100 * n + t + 1 in every channel.
    n, t, c = 2, 3, 8
    frames = (100 * np.arange(n)[:, None] + np.arange(t)[None] + 1).astype(np.float32)
    x = np.broadcast_to(frames[:, :, None, None, None], (n, t, 1, 1, c)).reshape(n * t, 1, 1, c)
    y = np.asarray(temporal_shift(jnp.asarray(x), t, shift_div=4)).reshape(n, t, c)
    zero = np.zeros((n, 1))
    np.testing.assert_array_equal(y[:, :, 0], np.concatenate([frames[:, 1:], zero], 1))
    np.testing.assert_array_equal(y[:, :, 2], np.concatenate([zero, frames[:, :-1]], 1))
    np.testing.assert_array_equal(y[:, :, 4:], np.broadcast_to(frames[..., None], (n, t, 4)))


def test_temporal_max_pool():
    # One clip of 4 frames; frame t holds [t, -t] in its two channels.
    t = np.arange(4, dtype=np.float32)
    x = jnp.asarray(np.stack([t, -t], -1).reshape(4, 1, 1, 2))
    y = np.asarray(temporal_max_pool(x, num_segments=4)).reshape(2, 2)
    # Windows {-1, 0, 1} and {1, 2, 3}; the padding never wins, even over negatives.
    np.testing.assert_array_equal(y, [[1, 0], [3, -1]])


def test_tsm_temporal_pool_halves_frames(fixtures_dir):
    cfg = with_backbone(fixture_cfg(fixtures_dir, 'tsm_r50s'), temporal_pool=True)
    cfg['cls_head'] = dict(cfg['cls_head'], temporal_pool=True)
    model = abstract(cfg)
    assert model.backbone.stage_segments == (4, 2)
    assert model.backbone.layer2[0].conv1.num_segments == 2
    x = jax.ShapeDtypeStruct((3, 4, 64, 64, 3), jnp.float32)
    assert nnx.eval_shape(lambda m, x: m.extract_feat(x), model, x).shape == (6, 8, 8, 512)
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (3, 10)


def test_tsm_block_shift_wraps_whole_blocks(fixtures_dir):
    cfg = with_backbone(fixture_cfg(fixtures_dir, 'tsm_r50s'), shift_place='block')
    backbone = build_model(cfg, rngs=nnx.Rngs(0)).backbone
    backbone.eval()
    assert not any(isinstance(b.conv1, TemporalShiftConv)
                   for i in range(2) for b in backbone.res_layer(i))
    x = clip(8, 32, 32, 3)
    expected = max_pool_3x3_s2(backbone.conv1(x))
    for i in range(2):
        for block in backbone.res_layer(i):
            # The shortcut sees the shifted tensor too.
            expected = block(temporal_shift(expected, 4, 8))
    assert_close_norm(np.asarray(backbone(x)), np.asarray(expected), SAME_NETWORK_REL)


def test_recognizer2d_shapes(fixtures_dir):
    tsn = abstract(fixture_cfg(fixtures_dir, 'tsn_r18s'))
    tsm = abstract(fixture_cfg(fixtures_dir, 'tsm_r50s'))
    x = jax.ShapeDtypeStruct((2, 8, 64, 64, 3), jnp.float32)  # TSM: 2 clips of 4 frames

    def shape(fn, model, x):
        return nnx.eval_shape(fn, model, x).shape

    assert shape(lambda m, x: m.extract_feat(x), tsn, x) == (16, 8, 8, 128)
    assert shape(lambda m, x: m(x), tsn, x) == (2, 10)  # consensus over all 8 frames
    assert shape(lambda m, x: m(x), tsm, x) == (4, 10)
    assert shape(lambda m, x: m.predict_scores(x), tsm, x) == (2, 10)
    assert shape(lambda m, x: m(x[:, :4]), tsm, x) == (2, 10)


class TinyBackbone3D(nnx.Module):
    """Stand-in 3D backbone: [B, T, H, W, 3] -> [B, T, H, W, 4]."""

    def __init__(self, rngs: nnx.Rngs):
        self.proj = nnx.Linear(3, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.proj(x)

    def frozen_norms(self) -> list[nnx.BatchNorm]:
        return []


@pytest.mark.parametrize('average_clips', ['prob', 'score', None])
def test_recognizer3d_views_and_average_clips(average_clips):
    rngs = nnx.Rngs(0)
    model = Recognizer3D(TinyBackbone3D(rngs), I3DHead(5, 4, average_clips=average_clips,
                                                       rngs=rngs))
    model.eval()
    x = clip(2, 3, 4, 8, 8, 3)  # N=2 videos, V=3 views
    scores = np.asarray(model(x))
    assert scores.shape == (6, 5)
    assert_close_norm(np.asarray(model(x[:, 0])), scores.reshape(2, 3, 5)[:, 0],
                      SAME_NETWORK_REL)
    views = scores.reshape(2, 3, 5)
    probs = np.exp(views) / np.exp(views).sum(-1, keepdims=True)
    expected = {'prob': probs.mean(1), 'score': views.mean(1), None: views}[average_clips]
    # XLA's exp against NumPy's, a 5-term sum, a 3-view mean: a few eps of the largest term.
    assert_close_norm(np.asarray(model.predict_scores(x)), expected, 8 * EPS32)


def test_average_clips_rejects_unknown():
    with pytest.raises(ValueError, match='not supported'):
        TSNHead(10, 8, average_clips='mean', rngs=nnx.Rngs(0))


@pytest.mark.parametrize('name, frames, views', [('tsn_r18s', 5, 2), ('tsm_r50s', 8, 4)])
def test_max_testing_views_gives_the_same_prediction(fixtures_dir, name, frames, views):
    cfg = fixture_cfg(fixtures_dir, name)
    x = clip(1, frames, 64, 64, 3)
    whole = build_model(cfg, rngs=nnx.Rngs(0))
    chunked = build_model(dict(cfg, test_cfg=dict(max_testing_views=views)), rngs=nnx.Rngs(0))
    whole.eval()
    chunked.eval()
    # TSN: 5 frames in chunks of 2 exercises the remainder chunk; TSM: two whole clips.
    assert_close_norm(np.asarray(chunked.predict_scores(x)), np.asarray(whole.predict_scores(x)),
                      SAME_NETWORK_REL)


def test_max_testing_views_runs_the_backbone_in_chunks():
    seen = []

    class RecordingBackbone(TinyBackbone3D):
        def __call__(self, x):
            seen.append(x.shape[0])
            return super().__call__(x)

    def model(**test_cfg):
        rngs = nnx.Rngs(0)
        recognizer = Recognizer3D(RecordingBackbone(rngs), I3DHead(5, 4, average_clips='prob',
                                                                   rngs=rngs),
                                  test_cfg=test_cfg)
        recognizer.eval()
        return recognizer

    x = clip(1, 10, 2, 4, 4, 3)
    whole = model().predict_scores(x)
    assert seen == [10]
    seen.clear()
    chunked = model(max_testing_views=4).predict_scores(x)
    assert seen == [4, 2]  # two chunks of 4 under lax.map, then the remaining 2 views
    assert_close_norm(np.asarray(chunked), np.asarray(whole), SAME_NETWORK_REL)


def test_max_testing_views_must_keep_tsm_clips_whole(fixtures_dir):
    cfg = fixture_cfg(fixtures_dir, 'tsm_r50s')
    with pytest.raises(ValueError, match='multiple'):
        build_model(dict(cfg, test_cfg=dict(max_testing_views=6)), rngs=nnx.Rngs(0))


def bn_modes(model: nnx.Module) -> dict[str, bool]:
    """'backbone/layer1/0/conv1/bn' -> use_running_average."""
    return {'/'.join(map(str, path)): m.use_running_average
            for path, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)}


@pytest.mark.parametrize('changes, in_eval', [
    (dict(), lambda path: False),
    (dict(norm_eval=True), lambda path: True),
    (dict(partial_bn=True), lambda path: path != 'backbone/conv1/bn'),
    (dict(frozen_stages=0), lambda path: path == 'backbone/conv1/bn'),
    (dict(frozen_stages=1), lambda path: not path.startswith('backbone/layer2')),
])
def test_train_keeps_bn_policies(fixtures_dir, changes, in_eval):
    model = build_model(with_backbone(fixture_cfg(fixtures_dir, 'tsn_r18s'), **changes),
                        rngs=nnx.Rngs(0))
    for _ in range(2):  # The policy survives a round trip through eval().
        model.eval()
        assert all(bn_modes(model).values())
        assert model.cls_head.dropout.deterministic
        model.train()
        assert bn_modes(model) == {path: in_eval(path) for path in bn_modes(model)}
        assert not model.cls_head.dropout.deterministic


def flat_arrays(state: nnx.State) -> dict[tuple, np.ndarray]:
    return {path: np.array(var.get_value()) for path, var in nnx.to_flat_state(state)}


def test_frozen_stages_stop_gradients_and_statistics(fixtures_dir):
    cfg = with_backbone(fixture_cfg(fixtures_dir, 'tsn_r18s'), frozen_stages=1)
    model = build_model(dict(cfg, cls_head=dict(cfg['cls_head'], dropout_ratio=0)),
                        rngs=nnx.Rngs(0))
    before = flat_arrays(nnx.state(model, nnx.BatchStat))
    grads = flat_arrays(nnx.state(nnx.grad(lambda m, x: m(x).sum())(model, clip(2, 2, 32, 32, 3)),
                                  nnx.Param))
    after = flat_arrays(nnx.state(model, nnx.BatchStat))
    frozen = lambda path: path[1] in ('conv1', 'layer1')  # noqa: E731
    backbone_grads = {path: g for path, g in grads.items() if path[0] == 'backbone'}
    assert {path for path, g in backbone_grads.items() if not g.any()} == {
        path for path in backbone_grads if frozen(path)}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed == {path for path in before if not frozen(path)}


def test_with_cp_rematerialises_blocks_with_equal_gradients(fixtures_dir):
    cfg = fixture_cfg(fixtures_dir, 'tsn_r18s')
    cfg = dict(cfg, cls_head=dict(cfg['cls_head'], dropout_ratio=0))
    x = clip(1, 2, 32, 32, 3)
    loss = lambda m: m(x).sum()  # noqa: E731
    remat_model = build_model(with_backbone(cfg, with_cp=True), rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(remat_model)
    jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s, copy=True)(x))(state))
    assert jaxpr.count('remat') == 4  # one per residual block
    plain = nnx.grad(loss)(build_model(cfg, rngs=nnx.Rngs(0)))
    remat = nnx.grad(loss)(remat_model)
    for a, b in zip(jax.tree.leaves(nnx.state(plain)), jax.tree.leaves(nnx.state(remat))):
        assert_close_norm(b, a, SAME_NETWORK_REL)


def test_from_scratch_init():
    model = build_model(dict(type='Recognizer2D', backbone=dict(type='ResNet', depth=18,
                                                                num_stages=1, out_indices=(0,),
                                                                strides=(1,), dilations=(1,)),
                             cls_head=dict(type='TSNHead', num_classes=1000, in_channels=64,
                                           init_std=0.02)), rngs=nnx.Rngs(0))
    stem = model.backbone.conv1
    kaiming_fan_out_std = np.sqrt(2 / (64 * 7 * 7))
    assert abs(float(stem.conv.kernel[...].std()) / kaiming_fan_out_std - 1) < 0.05
    assert float(stem.bn.scale[...].min()) == 1 and float(stem.bn.bias[...].max()) == 0
    fc = model.cls_head.fc_cls
    assert abs(float(fc.kernel[...].std()) - 0.02) < 0.002
    assert float(jnp.abs(fc.bias[...]).max()) == 0


def test_builder_errors_name_component_and_key(fixtures_dir):
    cfg = fixture_cfg(fixtures_dir, 'tsn_r18s')
    with pytest.raises(KeyError, match=r"model\.cls_head: unknown model type 'FooHead'"):
        build_model(dict(cfg, cls_head=dict(cfg['cls_head'], type='FooHead')), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"model\.backbone \(ResNet\).*'depht'"):
        build_model(with_backbone(cfg, depht=50), rngs=nnx.Rngs(0))
    # ResNetTSM forwards **kwargs to ResNet: an argument neither knows is still caught.
    with pytest.raises(TypeError, match=r"\(ResNetTSM\).*'shift_divv'"):
        build_model(with_backbone(fixture_cfg(fixtures_dir, 'tsm_r50s'), shift_divv=4),
                    rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"model \(Recognizer2D\).*'necks'"):
        build_model(dict(cfg, necks=None), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"\(I3DHead\).*'consensus'"):
        build_model(dict(cfg, cls_head=dict(cfg['cls_head'], type='I3DHead')), rngs=nnx.Rngs(0))
