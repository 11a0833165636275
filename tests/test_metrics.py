"""Metrics against MMAction2 1.2.0's outputs (fixtures) and small hand-worked cases."""
import json

import numpy as np
import pytest

from action_jax.evaluation.metrics import (anet_ar_an, average_recall_at_avg_proposals,
                                          evaluate, mean_average_precision,
                                          mean_class_accuracy, mmit_mean_average_precision,
                                          pairwise_temporal_iou, top_k_accuracy)
from tolerances import assert_close_ulps

# float64 sums of <= ~1e4 terms in another order than MMAction2's: ~1e4 * 2e-16 = 2e-12; a
# miscounted sample, proposal or threshold moves a metric by >= 1e-4.
RTOL = 1e-9
AR_KEYS = ('recall', 'avg_recall', 'proposals_per_video', 'auc')


@pytest.fixture(scope='module')
def metric_cases(fixtures_dir):
    with open(fixtures_dir / 'pipeline_metrics' / 'metrics.json') as f:
        return json.load(f)


def _cases(metric_cases, section):
    cases = metric_cases[section]['cases']
    assert len(cases) == 20
    return cases


def _ar_at_an(case):
    ground_truth = {v: np.array(gt, dtype=np.float64) for v, gt in case['ground_truth'].items()}
    proposals = {v: np.array(p, dtype=np.float64).reshape(-1, 3)
                 for v, p in case['proposals'].items()}
    return average_recall_at_avg_proposals(
        ground_truth, proposals, case['total_num_proposals'],
        max_avg_proposals=case['max_avg_proposals'],
        temporal_iou_thresholds=np.array(case['temporal_iou_thresholds']))


# --- MMAction2 reference cases ------------------------------------------------------------


def test_top_k_accuracy_fixtures(metric_cases):
    for case in _cases(metric_cases, 'top_k_accuracy'):
        got = top_k_accuracy(case['scores'], case['labels'], tuple(case['topk']))
        np.testing.assert_allclose(got, case['result'], rtol=RTOL, err_msg=f"seed {case['seed']}")


def test_mean_class_accuracy_fixtures(metric_cases):
    for case in _cases(metric_cases, 'mean_class_accuracy'):
        got = mean_class_accuracy(case['scores'], case['labels'])
        np.testing.assert_allclose(got, case['result'], rtol=RTOL, err_msg=f"seed {case['seed']}")


@pytest.mark.parametrize('fn', [mean_average_precision, mmit_mean_average_precision])
def test_average_precision_fixtures(metric_cases, fn):
    for case in _cases(metric_cases, fn.__name__):
        got = fn(np.array(case['scores']), np.array(case['labels']))
        np.testing.assert_allclose(got, case['result'], rtol=RTOL, err_msg=f"seed {case['seed']}")


def test_average_recall_at_avg_proposals_fixtures(metric_cases):
    for case in _cases(metric_cases, 'average_recall_at_avg_proposals'):
        got = _ar_at_an(case)
        for key, value in zip(AR_KEYS, got):
            np.testing.assert_allclose(value, case['result'][key], rtol=RTOL,
                                       err_msg=f"seed {case['seed']} {key}")


def test_anet_ar_an_fixtures(metric_cases):
    for case in _cases(metric_cases, 'anet_ar_an'):
        got = anet_ar_an(case['annotations'], case['proposals'])
        assert list(got) == ['auc', 'AR@1', 'AR@5', 'AR@10', 'AR@100']
        for key, value in case['result'].items():
            np.testing.assert_allclose(got[key], value, rtol=RTOL,
                                       err_msg=f"seed {case['seed']} {key}")


# --- hand-worked cases --------------------------------------------------------------------


def test_top_k_accuracy_by_hand():
    scores = [[0.1, 0.5, 0.4], [0.3, 0.2, 0.5]]
    # top-1 misses both; top-2 holds both labels; k past the class count hits all.
    assert top_k_accuracy(scores, [2, 0], (1, 2, 5)) == [0.0, 1.0, 1.0]
    assert top_k_accuracy(scores, [1, 1], (1, )) == [0.5]
    with pytest.raises(ValueError, match='k >= 1'):
        top_k_accuracy(scores, [2, 0], (0, ))


def test_mean_class_accuracy_counts_predicted_only_classes():
    # Predictions 0, 1, 1, 2 for labels 0, 0, 1, 1. Class 2 is predicted but never a
    # label (recall 0); classes 3 and 4 appear in neither and are ignored.
    scores = np.eye(5)[[0, 1, 1, 2]]
    assert mean_class_accuracy(scores, [0, 0, 1, 1]) == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_mean_class_accuracy_argmax_takes_first_maximum():
    scores = [[0.5, 0.5], [0.5, 0.5]]
    assert mean_class_accuracy(scores, [0, 1]) == pytest.approx(0.5)


def test_average_precision_by_hand():
    # Class 0, distinct scores: positives at ranks 1 and 3 -> 1/2 * 1 + 1/2 * 2/3.
    # Class 1, tied scores 0.5: one threshold (P 1/3, R 1/2), then (P 2/4, R 1).
    # Class 2 has no positive: NaN, left out of the mean.
    scores = np.array([[0.9, 0.9, 0.3], [0.8, 0.5, 0.2], [0.7, 0.5, 0.1], [0.6, 0.1, 0.4]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    ap0, ap1 = 1 / 2 + 1 / 3, 1 / 6 + 1 / 4
    assert mean_average_precision(scores, labels) == pytest.approx((ap0 + ap1) / 2)
    assert np.isnan(mean_average_precision(scores, np.zeros_like(labels)))
    # mmit: the same APs, computed per sample of the transposed problem; a sample
    # without a positive (here the former class 2) makes the mean NaN.
    assert mmit_mean_average_precision(scores[:, :2].T, labels[:, :2].T) == pytest.approx(
        (ap0 + ap1) / 2)
    assert np.isnan(mmit_mean_average_precision(scores.T, labels.T))


def test_pairwise_temporal_iou_by_hand():
    targets = np.array([[1., 2.], [0., 4.]], dtype=np.float32)
    candidates = np.array([[0., 2.], [2., 5.]], dtype=np.float32)
    iou = pairwise_temporal_iou(candidates, targets)
    assert iou.dtype == np.float32 and iou.shape == (2, 2)
    # Exact float32 lengths, then one correctly rounded division.
    assert_close_ulps(iou, [[0.5, 0.0], [0.5, 0.4]], 1)
    assert_close_ulps(pairwise_temporal_iou(candidates[1], targets), [0.0, 0.4], 1)
    with pytest.raises(ValueError, match='2-D target'):
        pairwise_temporal_iou(candidates, targets[0])


def test_average_recall_by_hand():
    # One video; the better-scored of two proposals covers the ground truth exactly.
    # Grid point j (1..100) uses int(2 * j / 100) proposals: recall 1 from j = 50.
    recall, avg_recall, per_video, auc = average_recall_at_avg_proposals(
        {'a': np.array([[0., 10., 0.]])},
        {'a': np.array([[20., 30., 0.8], [0., 10., 0.9]])},
        total_num_proposals=2, max_avg_proposals=2)
    expected = (np.arange(1, 101) >= 50).astype(float)
    np.testing.assert_array_equal(recall, np.tile(expected, (10, 1)))
    np.testing.assert_array_equal(avg_recall, expected)
    np.testing.assert_allclose(per_video, np.arange(1, 101) / 50)
    # Area: 1 * (2.0 - 1.0) plus the ramp from 0.98 to 1.0, over the last grid point 2.0.
    assert auc == pytest.approx(100 * (1.0 + 0.01) / 2)


def test_average_recall_video_without_proposals():
    # 'b' has no proposal: its ground truth counts as a miss, and max_avg_proposals
    # defaults to 2 proposals / 2 videos.
    recall, _, per_video, auc = average_recall_at_avg_proposals(
        {'a': np.array([[0., 10., 0.]]), 'b': np.array([[0., 5., 0.]])},
        {'a': np.array([[20., 30., 0.8], [0., 10., 0.9]]), 'b': np.zeros((0, 3))},
        total_num_proposals=2)
    np.testing.assert_array_equal(recall[0], 0.5 * (np.arange(1, 101) >= 50))
    np.testing.assert_allclose(per_video, np.arange(1, 101) / 100)
    assert auc == pytest.approx(100 * (0.5 * 0.5 + 0.01 * 0.25) / 1.0)


def test_average_recall_video_with_no_proposal_kept():
    # ratio = 1 * 2 / 10: video 'a' keeps int(0.2) = 0 proposals, 'b' keeps int(1.8) = 1,
    # which matches from grid point 50 on (int(2 * j / 100) >= 1).
    recall, _, _, _ = average_recall_at_avg_proposals(
        {'a': np.array([[0., 10., 0.]]), 'b': np.array([[0., 5., 0.]])},
        {'a': np.array([[0., 10., 0.9]]),
         'b': np.array([[0., 5., 0.9]] + [[20., 30., 0.1]] * 8)},
        total_num_proposals=10, max_avg_proposals=1)
    np.testing.assert_array_equal(recall[0], 0.5 * (np.arange(1, 101) >= 50))


def test_average_recall_compares_float32_iou():
    # IoU 0.7 in float64 but 0.69999999 in float32: a match at 0.6, none at 0.7.
    recall, _, _, _ = average_recall_at_avg_proposals(
        {'a': np.array([[0., 1., 0.]])}, {'a': np.array([[0., 0.7, 1.]])},
        total_num_proposals=1, max_avg_proposals=1,
        temporal_iou_thresholds=np.array([0.6, 0.7]))
    assert recall[0, -1] == 1.0 and recall[1, -1] == 0.0


@pytest.mark.parametrize('gt_end, proposal_end', [(10., 7.0000002), (9.9999996, 7.)])
def test_average_recall_casts_segments_to_float32(gt_end, proposal_end):
    # In float64 the IoU is 0.70000002 or more, which rounds up to a float32 above
    # 0.7; MMAction2 casts the segments to float32 first (10 and 7), so the IoU is
    # 0.7 -> 0.69999999 and misses the threshold.
    recall, _, _, _ = average_recall_at_avg_proposals(
        {'a': np.array([[0., gt_end, 0.]])}, {'a': np.array([[0., proposal_end, 1.]])},
        total_num_proposals=1, max_avg_proposals=1, temporal_iou_thresholds=np.array([0.7]))
    assert recall[0, -1] == 0.0


def test_anet_ar_an_by_hand():
    annotations = {'v_a': [{'segment': [0., 10.], 'label': 'x'}],
                   'v_b': [{'segment': [0., 5.], 'label': 'y'}]}
    proposals = {'v_a': [{'segment': [20., 30.], 'score': 0.9},
                         {'segment': [0., 10.], 'score': 0.8}],
                 'v_b': [{'segment': [5., 9.], 'score': 0.7}]}
    result = anet_ar_an(annotations, proposals)
    # All 3 proposals are kept; grid point k uses int(2 * 2k / 3) of video a's, so
    # its exact second proposal counts from k = 2 on; video b never matches.
    assert result['AR@1'] == 0.0
    assert result['AR@5'] == result['AR@10'] == result['AR@100'] == pytest.approx(0.5)
    # proposals_per_video is 1..100; recall 0 at 1, then 0.5 (percent of 100).
    assert result['auc'] == pytest.approx(0.5 * 0.5 + 0.5 * 98)
    # An empty proposal list is a miss here (MMAction2 raises IndexError instead).
    result = anet_ar_an(annotations, {**proposals, 'v_b': []})
    assert result['AR@1'] == result['AR@100'] == pytest.approx(0.5)


# --- evaluate -----------------------------------------------------------------------------


SCORES = np.array([[0.1, 0.6, 0.3], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.5, 0.1, 0.4]])
LABELS = np.array([1, 0, 1, 1])


def test_evaluate_keys_as_mmaction2_logs_them():
    got = evaluate(SCORES, LABELS)
    assert list(got) == ['acc/top1', 'acc/top5', 'acc/mean1']
    assert got['acc/top1'] == pytest.approx(0.5)
    assert got['acc/top5'] == 1.0
    # Class 0: 1/1; class 1: 1/3; class 2 is only predicted: 0.
    assert got['acc/mean1'] == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)
    assert evaluate(SCORES, LABELS, metrics='top_k_accuracy', topk=2, prefix=None) == {
        'top2': 0.75}


def test_evaluate_map_with_index_or_multi_hot_labels():
    multi_hot = np.eye(3)[LABELS]
    metrics = ('mean_average_precision', 'mmit_mean_average_precision')
    by_index = evaluate(SCORES, LABELS, metrics=metrics, prefix=None)
    assert by_index == evaluate(SCORES, multi_hot, metrics=metrics, prefix=None)
    assert by_index['mean_average_precision'] == mean_average_precision(SCORES, multi_hot)
    assert by_index['mmit_mean_average_precision'] == mmit_mean_average_precision(
        SCORES, multi_hot)


def test_evaluate_rejects_bad_requests():
    with pytest.raises(ValueError, match='class-index labels'):
        evaluate(SCORES, np.eye(3)[LABELS])
    with pytest.raises(ValueError, match='unknown metrics'):
        evaluate(SCORES, LABELS, metrics=('top1', ))
