"""action_jax.data.transforms against MMAction2 1.2.0 (tests/fixtures/pipeline_metrics)."""
import json

import cv2
import numpy as np
import pytest

from action_jax.data import transforms as T
from tolerances import EPS32, assert_close_norm, assert_close_ulps

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


@pytest.fixture(scope='module')
def sample_frames_cases(fixtures_dir):
    return json.loads((fixtures_dir / 'pipeline_metrics' / 'sample_frames.json').read_text())


@pytest.fixture(scope='module')
def transform_fixtures(fixtures_dir):
    folder = fixtures_dir / 'pipeline_metrics'
    with np.load(folder / 'transforms.npz') as arrays:
        arrays = dict(arrays)
    return json.loads((folder / 'transforms.json').read_text()), arrays


def _video(seed=0, shape=(4, 240, 320, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _frames_dict(imgs, **extra):
    return dict(imgs=imgs, img_shape=imgs.shape[1:3], modality='RGB', **extra)


def _build(cfg):
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    return T.TRANSFORMS[cfg['type']](**kwargs)


# ------------------------------------------------------------------------------------------
# Frame sampling: test mode against MMAction2, train mode on hand-computed cases
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['SampleFrames', 'DenseSampleFrames'])
def test_sample_frames_matches_mmaction2(sample_frames_cases, kind):
    cases = sample_frames_cases[kind]
    assert len(cases) == 480
    errors = 0
    for case in cases:
        transform = T.TRANSFORMS[kind](**case['args'])
        results = dict(total_frames=case['total_frames'], start_index=case['start_index'])
        if 'error' in case:  # MMAction2 raises ZeroDivisionError; we raise ValueError
            assert 'ZeroDivisionError' in case['error']
            with pytest.raises(ValueError, match='num_clips'):
                transform(results)
            errors += 1
            continue
        out = transform(results)
        assert out['frame_inds'].dtype == np.int32
        assert out['frame_inds'].tolist() == case['frame_inds'], case
        assert (out['num_clips'], out['clip_len']) == (case['num_clips'], case['clip_len'])
        assert out['frame_interval'] == case['args']['frame_interval']
    assert errors == sample_frames_cases['summary'][f'{kind}_errors']


def _train_inds(seed, total_frames=300, start_index=0, **kwargs):
    results = dict(total_frames=total_frames, start_index=start_index)
    return T.SampleFrames(**kwargs)(results, np.random.default_rng(seed))['frame_inds']


def test_sample_frames_train_one_offset_per_segment():
    for seed in range(50):
        inds = _train_inds(seed, total_frames=30, start_index=1, clip_len=1, num_clips=3)
        assert [(i - 1) // 10 for i in inds] == [0, 1, 2]  # avg_interval 10, start_index 1


def test_sample_frames_train_same_seed_same_clips_other_seeds_differ():
    kwargs = dict(clip_len=8, frame_interval=2, num_clips=2)
    assert np.array_equal(_train_inds(3, **kwargs), _train_inds(3, **kwargs))
    assert len({tuple(_train_inds(s, **kwargs)) for s in range(10)}) > 1


def test_sample_frames_train_short_video_branches():
    # avg_interval 0 and fewer frames than clips: round-half-even of arange(8) * 5 / 8.
    assert _train_inds(0, total_frames=5, clip_len=1, num_clips=8).tolist() == \
        [0, 1, 1, 2, 2, 3, 4, 4]
    # avg_interval 0 but enough frames: sorted random starts in [0, 10 - 8].
    for seed in range(20):
        inds = _train_inds(seed, total_frames=10, clip_len=8, num_clips=4).reshape(4, 8)
        starts = inds[:, 0]
        assert np.all(np.diff(starts) >= 0) and starts.max() <= 2
        assert np.array_equal(inds, starts[:, None] + np.arange(8))


def test_sample_frames_out_of_bound_options():
    # A 3-frame video and an 8-frame clip: offset 0, then loop or repeat the last frame.
    assert _train_inds(0, total_frames=3, clip_len=8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert _train_inds(0, total_frames=3, clip_len=8, out_of_bound_opt='repeat_last').tolist() \
        == [0, 1, 2, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError):
        T.SampleFrames(clip_len=1, out_of_bound_opt='wrap')


def test_sample_frames_keep_tail_frames_reaches_the_last_frame():
    # 10 frames in 3 segments: avg_interval 10 // 3 = 3 never reaches frame 9; 10 / 3 does.
    plain = np.stack([_train_inds(s, total_frames=10, clip_len=1, num_clips=3)
                      for s in range(200)])
    tail = np.stack([_train_inds(s, total_frames=10, clip_len=1, num_clips=3,
                                 keep_tail_frames=True) for s in range(200)])
    assert plain.max() == 8 and tail.max() == 9
    assert np.all(np.diff(tail, axis=1) >= 0)


def test_sample_frames_temporal_jitter_stays_within_interval():
    inds = _train_inds(0, total_frames=1000, clip_len=16, frame_interval=4,
                       temporal_jitter=True).reshape(-1)
    steps = np.diff(inds)
    assert steps.min() >= 1 and steps.max() <= 7 and len(set(steps)) > 1


def test_sample_frames_target_fps_stretches_the_clip():
    t = T.SampleFrames(clip_len=4, frame_interval=2, test_mode=True, target_fps=15)
    inds = t(dict(total_frames=100, start_index=0, avg_fps=30))['frame_inds']
    # ori_clip_len 4 * 2 * 30/15 = 16: offset (100 - 16) // 2, frames linspace(0, 15, 4).
    assert inds.tolist() == [42, 47, 52, 57]


def test_dense_sample_frames_train():
    for seed in range(30):
        t = T.DenseSampleFrames(clip_len=2, frame_interval=3, num_clips=2, sample_range=64)
        inds = t(dict(total_frames=100, start_index=0), np.random.default_rng(seed))['frame_inds']
        start = inds[0]
        # sample_position 37; MMAction2's randint(0, 36) excludes 36; clips 64 // 2 apart.
        assert 0 <= start <= 35
        assert inds.tolist() == [start, start + 3, start + 32, start + 35]


# ------------------------------------------------------------------------------------------
# Geometric transforms against MMAction2's outputs
# ------------------------------------------------------------------------------------------

def _run_chain(chain, frames):
    transforms = [_build(cfg) for cfg in chain['transforms']]
    assert [repr(t) for t in transforms] == chain['transform_reprs']
    results = dict(imgs=list(frames), img_shape=frames.shape[1:3], modality='RGB')
    for t in transforms:
        results = t(results)
    return results


def _check_meta(results, meta):
    for key, value in meta.items():
        if isinstance(value, (bool, str)):
            assert results[key] == value, key
        else:  # float32 metadata compares exactly after the float64 round trip through JSON
            ours = np.asarray(results[key])
            np.testing.assert_array_equal(ours.astype(np.float64), np.asarray(value), key)


@pytest.mark.parametrize('name', ['center_crop', 'three_crop', 'ten_crop', 'flip'])
def test_crops_and_flip_match_mmaction2_exactly(transform_fixtures, name):
    meta, arrays = transform_fixtures
    video = meta['videos']['landscape']
    chain = video['chains'][name]
    results = _run_chain(chain, arrays[video['input_key']])
    expected = arrays[chain['output_key']]
    assert results['imgs'].dtype == np.uint8
    np.testing.assert_array_equal(results['imgs'], expected)
    assert tuple(results['imgs'].shape) == tuple(chain['output_shape'])
    _check_meta(results, chain['results_meta'])


@pytest.mark.parametrize('name', ['resize', 'resize_three'])
def test_resize_matches_mmaction2_within_one_grey_level(transform_fixtures, name):
    meta, arrays = transform_fixtures
    video = meta['videos']['landscape']
    chain = video['chains'][name]
    results = _run_chain(chain, arrays[video['input_key']])
    diff = np.abs(results['imgs'].astype(np.int16) - arrays[chain['output_key']])
    assert results['imgs'].shape == arrays[chain['output_key']].shape
    assert diff.max() <= 1 and diff.mean() < 0.15  # cv2 here: 0 and 0
    _check_meta(results, chain['results_meta'])


def test_resize_float_frame_matches_unrounded_bilinear(transform_fixtures):
    meta, arrays = transform_fixtures
    video = meta['videos']['landscape']
    chain = video['chains']['resize_frame0_f32_ch0']
    frame0 = arrays[video['input_key']][:1].astype(np.float32)
    results = _run_chain(chain, frame0)
    expected = arrays[chain['output_key']]
    assert results['imgs'].dtype == np.float32
    # Two passes of 2-tap float32 interpolation: ~4 roundings of values up to 255, whichever
    # SIMD kernel runs them; pixel centres off by half a pixel would be off by grey levels.
    assert_close_norm(results['imgs'][0, ..., 0], expected, 8 * EPS32)


def test_resize_scale_forms_and_cumulative_scale_factor():
    results = T.Resize(0.5)(_frames_dict(_video()))
    assert results['imgs'].shape == (4, 120, 160, 3) and results['img_shape'] == (120, 160)
    results = T.Resize((64, 48), keep_ratio=False)(results)
    assert results['imgs'].shape == (4, 48, 64, 3)
    # 0.5 (exact) times 64 / 160 rounded to float32: one rounding.
    assert_close_ulps(results['scale_factor'], [64 / 320, 48 / 240], 1)
    # (long, short) limits: 320x240 fits into (100, 50) with the short edge binding.
    assert T.Resize((100, 50))(_frames_dict(_video()))['img_shape'] == (50, 67)
    # Flow frames without a channel axis and single-channel frames keep their layout.
    assert T.Resize((-1, 30))(dict(imgs=_video()[..., 0]))['imgs'].shape == (4, 30, 40)
    assert T.Resize((-1, 30))(dict(imgs=_video()[..., :1]))['imgs'].shape == (4, 30, 40, 1)


def test_three_crop_portrait_takes_top_bottom_middle():
    video = _video(shape=(2, 300, 224, 3))
    results = T.ThreeCrop(224)(_frames_dict(video))
    assert results['imgs'].shape == (6, 224, 224, 3)
    for i, y in enumerate([0, 76, 38]):
        np.testing.assert_array_equal(results['imgs'][2 * i:2 * i + 2], video[:, y:y + 224])
    with pytest.raises(ValueError):
        T.ThreeCrop(200)(_frames_dict(video))


def test_crop_quadruple_composes_across_crops():
    results = _frames_dict(_video())
    results = T.CenterCrop((160, 120))(results)  # x 80, y 60 of 320 x 240
    results = T.CenterCrop((80, 60))(results)  # x 40, y 30 of 160 x 120
    # Ratios of these sizes are dyadic fractions, exact in float32.
    np.testing.assert_array_equal(results['crop_quadruple'], [0.375, 0.375, 0.25, 0.25])
    assert results['crop_quadruple'].dtype == np.float32
    np.testing.assert_array_equal(results['crop_bbox'], [40, 30, 120, 90])
    np.testing.assert_array_equal(results['imgs'], _video()[:, 90:150, 120:200])


def _random_crop_results(transform, seed, shape=(2, 256, 340, 3)):
    video = _video(seed, shape)
    return video, transform(_frames_dict(video), np.random.default_rng(seed))


def _check_crop_inside(video, results):
    x1, y1, x2, y2 = results['crop_bbox']
    h, w = video.shape[1:3]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert results['img_shape'] == (y2 - y1, x2 - x1)
    np.testing.assert_array_equal(results['imgs'], video[:, y1:y2, x1:x2])


def test_multi_scale_crop_sizes_and_fixed_positions():
    scales = (1, .875, .75, .66)
    t = T.MultiScaleCrop(224, scales=scales, random_crop=False, max_wh_scale_gap=1)
    sizes = [int(256 * s) for s in scales]  # 256, 224, 192, 168
    allowed = {(w, h) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1}
    seen = set()
    for seed in range(200):
        video, results = _random_crop_results(t, seed)
        _check_crop_inside(video, results)
        h, w = results['img_shape']
        assert (w, h) in allowed
        ws, hs = (340 - w) // 4, (256 - h) // 4  # corners and centre in quarter steps
        assert tuple(results['crop_bbox'][:2]) in {
            (0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)}
        assert results['scales'] == scales
        seen.add((w, h))
    assert seen == allowed  # every candidate turns up


def test_multi_scale_crop_random_crop_and_snapping():
    t = T.MultiScaleCrop((170, 130), scales=(0.66, 0.5), random_crop=True, max_wh_scale_gap=0)
    seen = set()
    for seed in range(50):
        video, results = _random_crop_results(t, seed, shape=(1, 256, 256, 3))
        _check_crop_inside(video, results)
        seen.add(results['img_shape'])
    # Squares of 168 and 128 (gap 0); a side within 3 pixels of the input (w 170, h 130) snaps.
    assert seen == {(168, 170), (130, 128)}
    with pytest.raises(ValueError):
        T.MultiScaleCrop(224, num_fixed_crops=7)


def test_random_resized_crop_area_ratio_and_bounds():
    t = T.RandomResizedCrop()
    for seed in range(200):
        video, results = _random_crop_results(t, seed)
        _check_crop_inside(video, results)
        h, w = results['img_shape']
        assert 0.08 * 256 * 340 * 0.95 <= h * w
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # An impossible aspect ratio falls back to the centred square.
    _, results = _random_crop_results(T.RandomResizedCrop(aspect_ratio_range=(20.0, 30.0)), 0)
    np.testing.assert_array_equal(results['crop_bbox'], [42, 0, 298, 256])


@pytest.mark.parametrize('transform', [
    T.RandomCrop(200), T.RandomResizedCrop(),
    T.MultiScaleCrop(224, scales=(1, .875, .75, .66), num_fixed_crops=13)])
def test_random_crops_same_seed_same_crop_other_seeds_differ(transform):
    bbox = [tuple(_random_crop_results(transform, s)[1]['crop_bbox']) for s in (5, 5)]
    assert bbox[0] == bbox[1]
    assert len({tuple(_random_crop_results(transform, s)[1]['crop_bbox'])
                for s in range(10)}) > 1


def test_random_crop_never_draws_the_last_offset():
    # MMAction2 draws randint(0, img - size): with 1 spare pixel the offset is always 0.
    for seed in range(20):
        video, results = _random_crop_results(T.RandomCrop(200), seed, shape=(1, 201, 201, 3))
        assert tuple(results['crop_bbox']) == (0, 0, 200, 200)


def test_flip_ratio_direction_label_map_and_flow():
    video = _video()
    results = T.Flip(flip_ratio=0)(_frames_dict(video))
    assert results['flip'] is False and results['imgs'] is video
    results = T.Flip(flip_ratio=1, direction='vertical', flip_label_map={3: 4})(
        _frames_dict(video, label=3))
    np.testing.assert_array_equal(results['imgs'], video[:, ::-1])
    assert results['label'] == 4 and results['flip_direction'] == 'vertical'
    flow = video[..., 0]  # x, y, x, y flow frames
    results = T.Flip(flip_ratio=1)(dict(imgs=flow, modality='Flow'))
    np.testing.assert_array_equal(results['imgs'][1::2], flow[1::2, :, ::-1])
    np.testing.assert_array_equal(results['imgs'][0::2], 255 - flow[0::2, :, ::-1])
    flips = [T.Flip()(_frames_dict(video), np.random.default_rng(s))['flip'] for s in range(40)]
    assert 5 < sum(flips) < 35


def test_unsupported_options_raise():
    with pytest.raises(NotImplementedError):
        T.CenterCrop(100, lazy=True)(_frames_dict(_video()))
    with pytest.raises(NotImplementedError):
        T.Flip()(_frames_dict(_video(), keypoint=np.zeros((1, 4, 17, 2))))
    with pytest.raises(ValueError):
        T.Flip(direction='diagonal')
    with pytest.raises(TypeError):
        T.Resize(256)


# ------------------------------------------------------------------------------------------
# Normalize, FormatShape, PackActionInputs
# ------------------------------------------------------------------------------------------

def _mmcv_imnormalize(img, mean, std, to_rgb):
    """mmcv.imnormalize_ as MMAction2 0.x ran it, with OpenCV's arithmetic."""
    img = img.astype(np.float32)
    std_inv = 1 / np.float64(np.float32(std)).reshape(1, -1)
    if to_rgb:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    cv2.subtract(img, np.float64(np.float32(mean)).reshape(1, -1), img)
    cv2.multiply(img, std_inv, img)
    return img


@pytest.mark.parametrize('to_bgr', [False, True])
def test_normalize_matches_mmcv_within_two_ulps(to_bgr):
    video = _video(shape=(3, 20, 30, 3))
    results = T.Normalize(MEAN, STD, to_bgr=to_bgr)(_frames_dict(video))
    expected = np.stack([_mmcv_imnormalize(f, MEAN, STD, to_bgr) for f in video])
    assert results['imgs'].dtype == np.float32
    # The float32 subtraction rounds alike everywhere; the product with 1 / std rounds once
    # from float64, or (OpenCV's AVX-512 kernel) 1 / std first rounds to float32: 2 ulps apart.
    assert_close_ulps(results['imgs'], expected, 2)
    # Against exact arithmetic with the float32 mean and std: 3 roundings (x - mean, 1 / std,
    # the product). Channel 0 after to_bgr is the frame's channel 2.
    x = video[0, 0, 0, 2 if to_bgr else 0]
    assert_close_ulps(results['imgs'][0, 0, 0, 0],
                      (x - np.float64(np.float32(MEAN[0]))) / np.float64(np.float32(STD[0])), 3)


def test_normalize_flow_pairs_and_magnitude():
    flow = _video(shape=(4, 5, 6))
    results = T.Normalize([128, 127], [64, 32], adjust_magnitude=True)(
        dict(imgs=flow, modality='Flow', scale_factor=np.array([0.5, 2.0], np.float32)))
    out = results['imgs']
    assert out.shape == (2, 5, 6, 2)
    # Integers minus integer means, over powers of two, times powers of two: exact.
    np.testing.assert_array_equal(out[1, ..., 0], (flow[2] - 128.0) / 64 * 0.5)
    np.testing.assert_array_equal(out[1, ..., 1], (flow[3] - 127.0) / 32 * 2.0)


def _painted_video(num_frames, h=8, w=12):
    """Frame i is filled with i, so every output view says which frame it came from."""
    return np.broadcast_to(np.arange(num_frames, dtype=np.uint8)[:, None, None, None],
                           (num_frames, h, w, 3)).copy()


@pytest.mark.parametrize('fmt,frames_axis', [('NCTHW', False), ('NTHWC', False),
                                              ('NCHW', True), ('NHWC', True)])
def test_format_shape_view_order_after_three_crop(fmt, frames_axis):
    results = T.SampleFrames(clip_len=4, frame_interval=2, num_clips=2, test_mode=True)(
        dict(total_frames=20, start_index=0))
    inds = results['frame_inds']  # clip-major, 8 frames
    video = np.zeros((8, 8, 12, 3), np.uint8)
    video[..., 0] = inds[:, None, None]  # channel 0: the source frame
    video[..., 1] = np.arange(12)  # channel 1: the column, which tells the crops apart
    results.update(imgs=video, img_shape=(8, 12), modality='RGB')
    imgs = T.FormatShape(fmt)(T.ThreeCrop(8)(results))['imgs']
    # 2D: crops * clips * clip_len frames; 3D: crops * clips views of clip_len frames
    assert imgs.shape == ((24, 8, 8, 3) if frames_axis else (6, 4, 8, 8, 3))
    views = imgs.reshape(3, 2, 4, 8, 8, 3)
    for crop, x in enumerate([0, 4, 2]):  # ThreeCrop order: left, right, middle
        np.testing.assert_array_equal(views[crop, :, :, 0, 0, 0], inds.reshape(2, 4))
        assert np.all(views[crop, ..., 0, 1] == x)


def test_format_shape_flow_collapse_and_errors():
    flow = np.arange(3 * 2 * 4 * 5 * 2, dtype=np.float32).reshape(6, 4, 5, 2)  # 6 x/y frames
    results = T.FormatShape('NCHW')(dict(imgs=flow, modality='Flow', clip_len=3, num_clips=2))
    out = results['imgs']
    assert out.shape == (2, 4, 5, 6)
    # channel t * C + c holds component c of frame t, as in MMAction2's NCHW flow stacking
    np.testing.assert_array_equal(out[1, ..., 2 * 2 + 1], flow[3 + 2, ..., 1])
    results = T.FormatShape('NCTHW', collapse=True)(
        dict(imgs=_painted_video(4), clip_len=4, num_clips=1))
    assert results['imgs'].shape == (4, 8, 12, 3) == results['input_shape']
    with pytest.raises(ValueError):
        T.FormatShape('NCTHW_Heatmap')
    with pytest.raises(ValueError):
        T.FormatShape('NCTHW')(dict(imgs=_painted_video(5), clip_len=4, num_clips=1))


def test_pack_action_inputs():
    imgs = np.zeros((3, 4, 4, 3), np.float32)
    packed = T.PackActionInputs()(dict(imgs=imgs, label=7, img_shape=(4, 4), num_clips=3))
    assert set(packed) == {'imgs', 'label'} and packed['imgs'] is imgs
    label = packed['label']
    assert label.dtype == np.int32 and label.shape == () and label == 7
    multi_hot = np.array([0, 1, 1], np.float32)
    packed = T.PackActionInputs(collect_keys=('imgs', 'heatmap_imgs'))(
        dict(imgs=imgs, heatmap_imgs=imgs[:1], label=multi_hot))
    assert set(packed) == {'imgs', 'heatmap_imgs', 'label'}
    np.testing.assert_array_equal(packed['label'], multi_hot)
    with pytest.raises(ValueError):
        T.PackActionInputs()(dict(label=1))


def test_tsn_train_pipeline_is_reproducible_per_seed():
    pipeline = [
        T.SampleFrames(clip_len=1, frame_interval=1, num_clips=3),
        T.MultiScaleCrop(224, scales=(1, .875, .75, .66), random_crop=False, max_wh_scale_gap=1),
        T.Resize((224, 224), keep_ratio=False), T.Flip(flip_ratio=0.5), T.Normalize(MEAN, STD),
        T.FormatShape('NCHW'), T.PackActionInputs()]
    video = _video(shape=(300, 64, 85, 3))

    def run(seed):
        rng = np.random.default_rng(seed)
        results = dict(total_frames=300, start_index=0, label=2)
        for t in pipeline[:1]:
            results = t(results, rng)
        results.update(_frames_dict(video[results['frame_inds']]))
        for t in pipeline[1:]:
            results = t(results, rng)
        return results

    first, again = run(11), run(11)
    assert first['imgs'].shape == (3, 224, 224, 3) and first['imgs'].dtype == np.float32
    np.testing.assert_array_equal(first['imgs'], again['imgs'])
    assert any(not np.array_equal(first['imgs'], run(s)['imgs']) for s in range(12, 15))


def test_registry_and_reprs():
    assert set(T.TRANSFORMS) == {
        'SampleFrames', 'DenseSampleFrames', 'Resize', 'RandomCrop', 'RandomResizedCrop',
        'MultiScaleCrop', 'CenterCrop', 'ThreeCrop', 'TenCrop', 'Flip', 'Normalize',
        'FormatShape', 'PackActionInputs'}
    assert repr(T.FormatShape('NCHW')) == "FormatShape(input_format='NCHW')"
    assert repr(T.MultiScaleCrop(224)) == ('MultiScaleCrop(input_size=(224, 224), scales=(1,), '
                                           'max_wh_scale_gap=1, random_crop=False, '
                                           'num_fixed_crops=5, lazy=False)')
    assert repr(T.SampleFrames(8, 2, 3)).startswith(
        'SampleFrames(clip_len=8, frame_interval=2, num_clips=3, temporal_jitter=False')
