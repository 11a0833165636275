"""ActivityNet-style localization data: data set, transforms, training targets, synthetic set,
BSN's PGM files, visualisation."""
import filecmp
import json
import os

import numpy as np
import pytest
import scipy.interpolate
from flax import nnx
from PIL import Image

from action_jax.data import pipeline
from action_jax.evaluation.metrics import anet_ar_an
from action_jax.localization import postprocess as pp
from action_jax.localization import proposals as io
from action_jax.localization.data import (ActivityNetDataset, GenerateLocalizationLabels,
                                          LoadLocalizationFeature,
                                          LoadProposals, PackLocalizationInputs, bmn_labels,
                                          pool_feature, tem_labels)
from action_jax.localization.synthetic import make_synthetic_localization, synthetic_video
from action_jax.localization.visualize import draw_proposals
from action_jax.models.localizers import BMN, PEM, TEM
from action_jax.tools import make_synthetic_localization as make_cli
from action_jax.tools import visualize_localization as visualize_cli
from tolerances import EPS32, assert_close_norm, assert_close_ulps

ANNOTATIONS = {
    'v_first': {'duration_second': 10.0, 'duration_frame': 300, 'feature_frame': 288,
                'fps': 30.0, 'rfps': 30.0,
                'annotations': [{'segment': [0.96, 4.8], 'label': 'run'},
                                {'segment': [7.2, 12.0], 'label': 'jump'}]},
    'v_second': {'duration_second': 5.0, 'duration_frame': 150, 'feature_frame': 144,
                 'fps': 30.0, 'rfps': 30.0,
                 'annotations': [{'segment': [1.2, 2.4], 'label': 'run'}]},
}


@pytest.fixture
def tiny_set(tmp_path):
    """Two videos: 8 x 4 features each, annotation file as ActivityNet's."""
    ann_file = tmp_path / 'anno.json'
    ann_file.write_text(json.dumps(ANNOTATIONS))
    rng = np.random.default_rng(0)
    features = {}
    for name in ANNOTATIONS:
        features[name] = rng.normal(size=(8, 4)).round(4).astype(np.float32)
        np.savetxt(tmp_path / f'{name}.csv', features[name], fmt='%.4f', delimiter=',',
                   header='f0,f1,f2,f3', comments='')
    return ann_file, tmp_path, features


def _iou(pmin, pmax, gmin, gmax):  # MMAction2's temporal_iou / temporal_iop, verbatim
    inter = np.maximum(np.minimum(pmax, gmax) - np.maximum(pmin, gmin), 0.)
    return np.divide(inter, pmax - pmin - inter + gmax - gmin)


def _iop(pmin, pmax, gmin, gmax):
    inter = np.maximum(np.minimum(pmax, gmax) - np.maximum(pmin, gmin), 0.)
    return np.divide(inter, np.array(pmax - pmin))


def bmn_labels_reference(gt_bbox, tscale):
    """MMAction2's BMN.generate_labels for one video, in its loop form."""
    gap = 1. / tscale
    match_map = np.array([[[gap * idx, gap * idx + gap * jdx] for jdx in range(1, tscale + 1)]
                          for idx in range(tscale)])
    match_map = np.transpose(match_map, [1, 0, 2]).reshape(-1, 2)
    iou_map = np.array([_iou(match_map[:, 0], match_map[:, 1], s, e).reshape(tscale, tscale)
                        for s, e in gt_bbox]).astype(np.float32).max(axis=0)
    pad = 3 * (1. / tscale)
    anchors = [(gap * (i + -0.5), gap * (i + 1.5)) for i in range(tscale)]
    starts = np.stack((gt_bbox[:, 0] - pad / 2, gt_bbox[:, 0] + pad / 2), axis=1)
    ends = np.stack((gt_bbox[:, 1] - pad / 2, gt_bbox[:, 1] + pad / 2), axis=1)
    start = [np.max(_iop(a, b, starts[:, 0], starts[:, 1])) for a, b in anchors]
    end = [np.max(_iop(a, b, ends[:, 0], ends[:, 1])) for a, b in anchors]
    return iou_map, np.array(start, np.float32), np.array(end, np.float32)


def tem_labels_reference(gt_bbox, tscale, boundary_ratio):
    """MMAction2's TEM.generate_labels for one video, in its loop form."""
    gap = 1. / tscale
    tmins, tmaxs = gt_bbox[:, 0], gt_bbox[:, 1]
    pad = np.maximum(1. / tscale, boundary_ratio * (tmaxs - tmins))
    starts = np.stack((tmins - pad / 2, tmins + pad / 2), axis=1)
    ends = np.stack((tmaxs - pad / 2, tmaxs + pad / 2), axis=1)
    rows = [(np.max(_iop(a, b, tmins, tmaxs)), np.max(_iop(a, b, starts[:, 0], starts[:, 1])),
             np.max(_iop(a, b, ends[:, 0], ends[:, 1])))
            for a, b in ((gap * (i + 0.), gap * (i + 1.)) for i in range(tscale))]
    return np.array(rows, np.float32).T


def pool_feature_reference(data, num_proposals, num_sample_bins=3):
    """MMAction2's tools/data/activitynet/activitynet_feature_postprocessing.pool_feature."""
    f = scipy.interpolate.interp1d(list(range(len(data))), data, axis=0)
    eps = 1e-4
    start, end = eps, len(data) - 1 - eps
    anchor_size = (end - start) / num_proposals
    ptr, feature = start, []
    for _ in range(num_proposals):
        feature.append(np.mean(f([ptr + i / num_sample_bins * anchor_size
                                  for i in range(num_sample_bins)]), axis=0))
        ptr += anchor_size
    return np.stack(feature)


def run(pipeline, results):
    for transform in pipeline:
        results = transform(results)
    return results


# ---------------------------------------------------------------------------------------------
# Data set and transforms.

def test_dataset_and_pipeline(tiny_set):
    ann_file, root, features = tiny_set
    dataset = ActivityNetDataset(ann_file, data_prefix=dict(video=str(root)))
    assert len(dataset) == 2
    first = dataset[0]
    assert first['video_name'] == 'v_first'
    assert first['feature_path'] == os.path.join(str(root), 'v_first.csv')
    first['annotations'].clear()  # a copy: the data set is unchanged
    assert len(dataset[0]['annotations']) == 2
    assert dataset.annotations()['v_second'] == ANNOTATIONS['v_second']['annotations']

    results = run([LoadLocalizationFeature(), GenerateLocalizationLabels()], dataset[0])
    np.testing.assert_array_equal(results['raw_feature'], features['v_first'])  # [T, C]
    # Seconds over the 288 of 300 frames the features cover (9.6 s); clipped to [0, 1].
    np.testing.assert_allclose(results['gt_bbox'], [[0.1, 0.5], [0.75, 1.0]], rtol=1e-12)
    packed = PackLocalizationInputs(keys=('gt_bbox',), max_gt=4)(results)
    assert sorted(packed) == ['gt_bbox', 'inputs', 'num_gt']
    assert packed['gt_bbox'].shape == (4, 2) and packed['num_gt'] == 2
    np.testing.assert_array_equal(packed['gt_bbox'][2:], 0)
    with pytest.raises(ValueError, match='max_gt=1'):
        PackLocalizationInputs(keys=('gt_bbox',), max_gt=1)(results)
    with pytest.raises(ValueError, match='raw_feature'):
        PackLocalizationInputs()({'video_name': 'v'})
    # A test pipeline without labels packs what is there.
    assert sorted(PackLocalizationInputs(keys=('gt_bbox',))(
        LoadLocalizationFeature()(dataset[1]))) == ['inputs']
    # The generic pipeline finds them by name (imported on first use).
    for cls in (LoadLocalizationFeature, GenerateLocalizationLabels, LoadProposals,
                PackLocalizationInputs):
        assert pipeline.LAZY_TRANSFORMS[cls.__name__] == cls.__module__
    assert isinstance(pipeline.build_transform(dict(type='PackLocalizationInputs')),
                      PackLocalizationInputs)


def test_feature_pooling_matches_mmaction2_tool(tiny_set):
    ann_file, root, features = tiny_set
    dataset = ActivityNetDataset(ann_file, data_prefix=str(root))
    pooled = LoadLocalizationFeature(temporal_dim=5)(dataset[0])['raw_feature']
    assert pooled.shape == (5, 4) and pooled.dtype == np.float32
    # float64 pooling rounded to float32: half an ulp of each value, at most eps of the largest.
    assert_close_norm(pooled, pool_feature_reference(features['v_first'], 5), EPS32)
    data = np.random.default_rng(1).normal(size=(37, 3))
    # float64 interpolation by another formula than scipy's: a few float64 eps (2e-16).
    assert_close_norm(pool_feature(data, 100), pool_feature_reference(data, 100), 1e-12)
    assert LoadLocalizationFeature(temporal_dim=8)(dataset[0])['raw_feature'].shape == (8, 4)


def test_bmn_and_tem_labels_match_mmaction2():
    rng = np.random.default_rng(2)
    for tscale in (7, 16):
        starts = rng.uniform(0, 0.8, 3)
        gt_bbox = np.stack([starts, np.minimum(starts + rng.uniform(0.05, 0.5, 3), 1)], axis=1)
        labels = bmn_labels(gt_bbox, tscale)
        for ours, ref in zip((labels['gt_iou_map'], labels['gt_start'], labels['gt_end']),
                             bmn_labels_reference(gt_bbox, tscale)):
            assert ours.dtype == np.float32
            np.testing.assert_array_equal(ours, ref)
        labels = tem_labels(gt_bbox, tscale, boundary_ratio=0.1)
        np.testing.assert_array_equal(
            np.stack([labels[k] for k in ('label_action', 'label_start', 'label_end')]),
            tem_labels_reference(gt_bbox, tscale, 0.1))


def test_labels_hand_case():
    # T = 4, one action over steps 1-2: the proposal (duration 2, start 1) matches exactly.
    labels = bmn_labels(np.array([[0.25, 0.75]]), 4)
    assert labels['gt_iou_map'].shape == (4, 4)
    assert labels['gt_iou_map'][1, 1] == 1.0 and labels['gt_iou_map'].max() == 1.0
    assert labels['gt_iou_map'][0, 1] == pytest.approx(0.5)  # [0.25, 0.5] inside [0.25, 0.75]
    # Start window [0.25 - 0.375, 0.25 + 0.375] covers anchor 1's [0.125, 0.625] fully.
    assert labels['gt_start'][1] == 1.0 and labels['gt_end'][3] == 1.0
    labels = tem_labels(np.array([[0.25, 0.75]]), 4, boundary_ratio=0.1)
    np.testing.assert_array_equal(labels['label_action'], [0, 1, 1, 0])
    np.testing.assert_allclose(labels['label_start'], [0.5, 0.5, 0, 0])  # window 0.25 +- 1/8


def test_generate_labels_from_packed_batch():
    bmn = nnx.eval_shape(lambda: BMN(temporal_dim=10, boundary_ratio=0.5, num_samples=4,
                                     num_samples_per_bin=3, feat_dim=8, soft_nms_alpha=0.4,
                                     soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
                                     post_process_top_k=100, rngs=nnx.Rngs(0)))
    tem = nnx.eval_shape(lambda: TEM(temporal_dim=10, boundary_ratio=0.1, tem_feat_dim=8,
                                     tem_hidden_dim=8, tem_match_threshold=0.5,
                                     rngs=nnx.Rngs(0)))
    videos = [np.array([[0.1, 0.4], [0.6, 0.9]]), np.array([[0.0, 1.0]])]
    packed = np.zeros((2, 5, 2))
    packed[0, :2], packed[1, :1] = videos
    for model, keys in ((bmn, ('gt_iou_map', 'gt_start', 'gt_end')),
                        (tem, ('label_action', 'label_start', 'label_end'))):
        from_packed = model.generate_labels(packed, np.array([2, 1]))
        from_list = model.generate_labels(videos)
        assert sorted(from_packed) == sorted(keys)
        for key in keys:
            assert from_packed[key].shape[0] == 2
            np.testing.assert_array_equal(from_packed[key], from_list[key])
    assert bmn.generate_labels(videos)['gt_iou_map'].shape == (2, 10, 10)


def test_load_proposals_pads_to_top_k(tmp_path):
    proposals = np.array([[0.1, 0.5, 0.9, 0.8, 0.72, 0.6, 0.9],
                          [0.2, 0.7, 0.5, 0.4, 0.20, 0.3, 0.5],
                          [0.0, 0.3, 0.3, 0.2, 0.06, 0.1, 0.2]])
    io.dump_pgm_proposals(tmp_path / 'p', 'v_x', proposals)
    io.dump_bsp_feature(tmp_path / 'f', 'v_x', np.arange(96.).reshape(3, 32))
    load = LoadProposals(top_k=5, pgm_proposals_dir=str(tmp_path / 'p'),
                         pgm_features_dir=str(tmp_path / 'f'))
    results = load({'video_name': 'v_x'})
    np.testing.assert_array_equal(results['proposal_mask'], [True, True, True, False, False])
    np.testing.assert_allclose(results['reference_temporal_iou'], [0.6, 0.3, 0.1, 0, 0])
    assert results['bsp_feature'].shape == (5, 32) and results['bsp_feature'].dtype == np.float32
    packed = PackLocalizationInputs(keys=('reference_temporal_iou', 'bsp_feature'))(results)
    assert sorted(packed) == ['bsp_feature', 'proposal_mask', 'reference_temporal_iou']
    short = LoadProposals(2, str(tmp_path / 'p'), str(tmp_path / 'f'))({'video_name': 'v_x'})
    np.testing.assert_allclose(short['tmax'], [0.5, 0.7])
    assert short['proposal_mask'].all()


# ---------------------------------------------------------------------------------------------
# The synthetic set.

def test_synthetic_set_is_deterministic_and_well_formed(tmp_path):
    info = make_synthetic_localization(tmp_path / 'a', num_videos=12, temporal_dim=20,
                                       feat_dim=6, seed=3)
    make_synthetic_localization(tmp_path / 'b', num_videos=12, temporal_dim=20, feat_dim=6,
                                seed=3)
    make_synthetic_localization(tmp_path / 'c', num_videos=12, temporal_dim=20, feat_dim=6,
                                seed=4)
    files = sorted(os.listdir(info['feature_dir']))
    assert len(files) == 12
    same = filecmp.cmpfiles(tmp_path / 'a' / 'csv_mean_20', tmp_path / 'b' / 'csv_mean_20',
                            files, shallow=False)[0]
    assert same == files
    assert filecmp.cmp(tmp_path / 'a' / 'anet_anno_full.json',
                       tmp_path / 'b' / 'anet_anno_full.json', shallow=False)
    assert not filecmp.cmp(tmp_path / 'a' / 'anet_anno_full.json',
                           tmp_path / 'c' / 'anet_anno_full.json', shallow=False)
    assert info['num_videos'] == {'train': 9, 'val': 3}

    dataset = ActivityNetDataset(info['ann_files']['full'], dict(video=info['feature_dir']))
    lengths = []
    for i in range(len(dataset)):
        results = run([LoadLocalizationFeature(), GenerateLocalizationLabels()], dataset[i])
        assert results['raw_feature'].shape == (20, 6)
        assert results['feature_frame'] % 16 == 0 and results['feature_frame'] <= \
            results['duration_frame']
        gt = results['gt_bbox']
        assert 1 <= len(gt) <= 3
        assert (gt[:, 0] < gt[:, 1]).all() and (gt[1:, 0] >= gt[:-1, 1] + 1 / 20 - 1e-9).all()
        assert gt.min() >= 1 / 20 - 1e-9 and gt.max() <= 1 - 1 / 20 + 1e-9  # gaps at the ends
        lengths += list(gt[:, 1] - gt[:, 0])
    assert min(lengths) < 0.2 and max(lengths) > 0.3  # varied lengths


def test_synthetic_features_carry_the_planted_patterns():
    patterns = np.eye(3, 5) * 2.0
    features, segments, labels = synthetic_video(np.random.default_rng(0), patterns,
                                                 temporal_dim=30, noise=0.0, max_segments=3,
                                                 min_length=0.1, max_length=0.3)
    coverage = tem_labels(segments, 30, 0.1)['label_action']  # fraction of each step covered
    background = features[coverage == 0][0]
    # Without noise, every background step is the same float64 sum rounded to float32.
    np.testing.assert_array_equal(features[coverage == 0], np.broadcast_to(background, (
        int((coverage == 0).sum()), 5)))
    for (start, end), label in zip(segments, labels):
        inside = (np.arange(30) >= np.ceil(start * 30)) & (np.arange(30) + 1 <= end * 30)
        # background + pattern and background, each rounded to float32 (values < 4), then
        # subtracted: 2 ulps of the pattern's 2.0, exactly 0 where the pattern is 0.
        assert_close_ulps(features[inside] - background, np.broadcast_to(
            patterns[label], (int(inside.sum()), 5)), 2)


def test_make_synthetic_localization_cli(tmp_path, capsys):
    info = make_cli.main(['--out', str(tmp_path), '--num-videos', '8', '--temporal-dim', '12',
                          '--feat-dim', '4'])
    assert info['num_videos'] == {'train': 6, 'val': 2}
    assert (tmp_path / 'label_map.txt').exists() and 'wrote' in capsys.readouterr().out
    database = json.loads((tmp_path / 'anet_anno_val.json').read_text())
    assert len(database) == 2 and all(k.startswith('v_') for k in database)


# ---------------------------------------------------------------------------------------------
# BSN's PGM and PEM post-processing, and the visualisation, end to end on files.

def test_bsn_pgm_pipeline_with_oracle_scores(tmp_path):
    t = 32
    info = make_synthetic_localization(tmp_path / 'data', num_videos=8, temporal_dim=t,
                                       feat_dim=4, val_fraction=0.5)
    dataset = ActivityNetDataset(info['ann_files']['val'], dict(video=info['feature_dir']))
    tem = nnx.eval_shape(lambda: TEM(temporal_dim=t, boundary_ratio=0.1, tem_feat_dim=4,
                                     tem_hidden_dim=4, tem_match_threshold=0.5,
                                     rngs=nnx.Rngs(0)))
    for i in range(len(dataset)):  # a perfect TEM: its own training targets as probabilities
        results = GenerateLocalizationLabels()(dataset[i])
        labels = tem.generate_labels([results['gt_bbox']])
        scores = np.stack([labels[k][0] for k in ('label_action', 'label_start', 'label_end')], 1)
        io.dump_tem_result(tmp_path / 'tem', results['video_name'], tem.post_process(scores))
    count = pp.generate_pgm(info['ann_files']['val'], tmp_path / 'tem', tmp_path / 'props',
                            tmp_path / 'feats', dict(temporal_scale=t, peak_threshold=0.5),
                            dict(top_k=100))
    assert count == len(dataset) == 4
    pem = nnx.eval_shape(lambda: PEM(pem_feat_dim=32, pem_hidden_dim=8, pem_u_ratio_m=1,
                                     pem_u_ratio_l=2, pem_high_temporal_iou_threshold=0.6,
                                     pem_low_temporal_iou_threshold=0.2, soft_nms_alpha=0.75,
                                     soft_nms_low_threshold=0.65, soft_nms_high_threshold=0.9,
                                     post_process_top_k=100, rngs=nnx.Rngs(0)))
    load = LoadProposals(100, str(tmp_path / 'props'), str(tmp_path / 'feats'))
    proposals = {}
    for i in range(len(dataset)):  # a perfect PEM: the reference IoU as its score
        sample = load(dataset[i])
        assert sample['bsp_feature'].shape == (100, 32)
        proposals[sample['video_name']] = pem.post_process(sample['reference_temporal_iou'],
                                                           sample)
    metrics = anet_ar_an(dataset.annotations(), proposals)
    assert metrics['AR@100'] > 0.9 and metrics['auc'] > 80, metrics

    io.dump_proposals_json(proposals, tmp_path / 'results.json')
    out = visualize_cli.main(['--ann-file', info['ann_files']['val'], '--results',
                              str(tmp_path / 'results.json'), '--out', str(tmp_path / 'v.png'),
                              '--top-k', '5'])
    image = np.asarray(Image.open(out).convert('RGB'))
    assert image.shape[1] == 900
    assert ((image == (46, 139, 87)).all(-1)).sum() > 50  # ground-truth bars drawn


def test_draw_proposals_layout():
    annotations = [{'segment': [10.0, 30.0], 'label': 'run'}]
    proposals = [{'segment': [12.0, 28.0], 'score': 0.9}, {'segment': [50.0, 80.0], 'score': 0.2},
                 {'segment': [0.0, 100.0], 'score': 0.5}]
    image = draw_proposals(annotations, proposals, duration=100.0, top_k=2, width=400)
    # Rows: axis, one ground truth, a half-row gap, two proposals (no title).
    assert image.size == (400, 4 * 18 + 9 + 2 * 10)
    pixels = np.asarray(image)
    green = np.argwhere((pixels == (46, 139, 87)).all(-1))
    left, right = 10 + 120, 400 - 10
    assert abs(green[:, 1].min() - (left + 0.1 * (right - left))) <= 1
    assert abs(green[:, 1].max() - (left + 0.3 * (right - left))) <= 1
