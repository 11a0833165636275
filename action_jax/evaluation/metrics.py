"""MMAction2's evaluation metrics, host-side in NumPy.

Recognition: ``top_k_accuracy``, ``mean_class_accuracy``,
``mean_average_precision``, ``mmit_mean_average_precision`` and the
``AccMetric``-style ``evaluate``. Temporal localisation:
``pairwise_temporal_iou``, ``average_recall_at_avg_proposals`` and
``anet_ar_an`` (``ANetMetric(metric_type='AR@AN')``).

The arithmetic follows MMAction2 1.2.0 step by step (dtypes, sort kinds,
summation order), so results agree with it to the last bit or close to it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    'ACC_METRICS',
    'anet_ar_an',
    'average_recall_at_avg_proposals',
    'evaluate',
    'mean_average_precision',
    'mean_class_accuracy',
    'mmit_mean_average_precision',
    'pairwise_temporal_iou',
    'top_k_accuracy',
]

# Read-only, so the shared default argument cannot be mutated by a caller.
_DEFAULT_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_DEFAULT_TIOU_THRESHOLDS.flags.writeable = False
# NumPy < 2.0 (allowed by setup.cfg) only has the old name.
_trapezoid = getattr(np, 'trapezoid', None) or np.trapz

ACC_METRICS = ('top_k_accuracy', 'mean_class_accuracy',
               'mean_average_precision', 'mmit_mean_average_precision')


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike,
                   topk: Sequence[int] = (1, )) -> list[float]:
    """Fraction of samples whose label is among the k highest scores, per k.

    Ranks with ``np.argsort`` like MMAction2 (ties in a row have no defined
    order); a k at or above the number of classes counts every sample as hit.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)[:, np.newaxis]
    ranking = np.argsort(scores, axis=1)
    accs = []
    for k in topk:
        if k < 1:
            # ranking[:, -0:] would be every class and silently give 1.0.
            raise ValueError(f'top-k needs k >= 1, got {k}')
        hits = np.any(ranking[:, -k:] == labels, axis=1)
        accs.append(float(hits.sum() / hits.shape[0]))
    return accs


def mean_class_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Mean per-class recall of the argmax prediction.

    As in MMAction2 (via its confusion matrix), the classes are those seen in
    the labels *or* in the predictions; a class that is predicted but never a
    label contributes a recall of 0.
    """
    pred = np.argmax(np.asarray(scores), axis=1)
    labels = np.asarray(labels).astype(np.int64)
    classes = np.union1d(pred, labels)
    label_idx = np.searchsorted(classes, labels)
    count = np.bincount(label_idx, minlength=classes.size)
    hit = np.bincount(label_idx[pred == labels], minlength=classes.size)
    recall = np.zeros(classes.size)
    np.divide(hit, count, out=recall, where=count > 0)
    return float(np.mean(recall))


def _average_precision(score: np.ndarray, truth: np.ndarray) -> float:
    """AP of one ranking: the step sum of (R_i - R_{i-1}) * P_i over the
    distinct score thresholds; NaN when ``truth`` has no positive."""
    order = np.argsort(score, kind='mergesort')[::-1]
    score = score[order]
    positive = truth[order] == 1
    # A run of tied scores is one threshold, closed at its last position.
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tps = np.cumsum(positive)[ends]
    precision = tps / (ends + 1)
    with np.errstate(invalid='ignore'):
        recall = tps / tps[-1]
    last = np.searchsorted(tps, tps[-1])  # first threshold at full recall
    steps = np.diff(recall[:last + 1], prepend=0.0) * precision[:last + 1]
    # MMAction2 sums from full recall down; same order, same rounding.
    return float(np.sum(steps[::-1].copy()))


def mean_average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Mean over classes of the per-class AP (multi-hot ``labels``).

    Classes without a positive label have an undefined AP and are left out of
    the mean, as in MMAction2; NaN if no class has a positive.
    """
    scores = np.stack([np.asarray(s) for s in scores]).T
    labels = np.stack([np.asarray(lb) for lb in labels]).T
    aps = [_average_precision(s, lb) for s, lb in zip(scores, labels)]
    aps = [ap for ap in aps if not np.isnan(ap)]
    return float(np.mean(aps)) if aps else float('nan')


def mmit_mean_average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Mean over samples of the AP over classes (Multi-Moments in Time).

    A sample without a positive label makes the result NaN, as in MMAction2.
    """
    aps = [_average_precision(np.asarray(s), np.asarray(lb))
           for s, lb in zip(scores, labels)]
    return float(np.mean(aps))


def pairwise_temporal_iou(candidate_segments: ArrayLike,
                          target_segments: ArrayLike) -> np.ndarray:
    """Temporal IoU of ``[start, end]`` segments, as float32.

    Returns shape (n_target, n_candidate), or (n_target, ) for a single 1-D
    candidate. Lengths and intersections are computed in the input dtype and
    divided in float64, as MMAction2 does.
    """
    candidates = np.asarray(candidate_segments)
    targets = np.asarray(target_segments)
    if targets.ndim != 2 or candidates.ndim not in (1, 2):
        raise ValueError('expected 1-D or 2-D candidate_segments and 2-D '
                         f'target_segments, got {candidates.ndim}-D and '
                         f'{targets.ndim}-D')
    single = candidates.ndim == 1
    candidates = np.atleast_2d(candidates)
    start = np.maximum(candidates[np.newaxis, :, 0], targets[:, np.newaxis, 0])
    end = np.minimum(candidates[np.newaxis, :, 1], targets[:, np.newaxis, 1])
    intersection = (end - start).clip(0)
    union = ((targets[:, 1] - targets[:, 0])[:, np.newaxis] +
             (candidates[:, 1] - candidates[:, 0])[np.newaxis, :] -
             intersection)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = (intersection.astype(np.float64) / union).astype(np.float32)
    return iou[:, 0] if single else iou


def _video_ious(ground_truth: ArrayLike, proposals: ArrayLike,
                ratio: float) -> tuple[np.ndarray, int]:
    """IoUs (n_gt, n_kept) of a video's best-scored proposals, and n_kept."""
    gt = np.asarray(ground_truth)[:, :2].astype(np.float32)
    props = np.asarray(proposals, dtype=np.float64).reshape(-1, 3)
    if props.shape[0] == 0:
        # MMAction2 scores a proposal-less video as one IoU-0 column, and does
        # not count it among the retrieved proposals.
        return np.zeros((gt.shape[0], 1), dtype=np.float32), 0
    order = np.argsort(props[:, 2])[::-1]
    n_kept = min(int(props.shape[0] * ratio), props.shape[0])
    kept = props[order, :2].astype(np.float32)[:n_kept]
    return pairwise_temporal_iou(kept, gt), n_kept


def average_recall_at_avg_proposals(
    ground_truth: Mapping[str, ArrayLike],
    proposals: Mapping[str, ArrayLike],
    total_num_proposals: int,
    max_avg_proposals: float | None = None,
    temporal_iou_thresholds: ArrayLike = _DEFAULT_TIOU_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Recall against the average number of proposals per video (AR@AN).

    Args:
        ground_truth: video -> (n_gt, >=2) array of ``[start, end, ...]``.
        proposals: video -> (n, 3) array of ``[start, end, score]``; every
            video of ``ground_truth`` must be present (it may be empty).
        total_num_proposals: number of proposals over all videos.
        max_avg_proposals: largest average proposals per video on the grid;
            falsy means ``total_num_proposals / num_videos``.
        temporal_iou_thresholds: IoU thresholds (a proposal matches at >=).

    Returns:
        ``(recall, avg_recall, proposals_per_video, auc)``: ``recall`` is
        (n_thresholds, 100), recall at each threshold and grid point;
        ``avg_recall`` its mean over thresholds; ``proposals_per_video`` the
        100 grid points; ``auc`` the area under the AR@AN curve, in percent
        of the largest grid point.
    """
    thresholds = np.asarray(temporal_iou_thresholds, dtype=np.float64)
    num_videos = len(ground_truth)
    if not max_avg_proposals:
        max_avg_proposals = float(total_num_proposals) / num_videos
    ratio = max_avg_proposals * float(num_videos) / total_num_proposals

    ious, num_kept = [], 0
    for video, gt in ground_truth.items():
        iou, n_kept = _video_ious(gt, proposals[video], ratio)
        ious.append(iou)
        num_kept += n_kept

    # Grid of fractions of the retrieved proposals (MMAction2's operation
    # order, so the float grid and its int32 truncation below match).
    pcn = np.arange(1, 101) / 100.0 * (
        max_avg_proposals * float(num_videos) / num_kept)
    matches = np.zeros((thresholds.size, pcn.size), dtype=np.int64)
    positives = 0
    for iou in ious:
        n_gt, n_cols = iou.shape
        positives += n_gt
        if n_cols == 0:  # int(n * ratio) kept none of this video's proposals
            continue
        # (threshold, gt): index of the first proposal reaching the IoU.
        hit = iou[np.newaxis] >= thresholds[:, np.newaxis, np.newaxis]
        first_hit = np.where(hit.any(axis=2), hit.argmax(axis=2), n_cols)
        num_used = np.minimum((n_cols * pcn).astype(np.int32), n_cols)
        matches += (first_hit[:, :, np.newaxis] < num_used).sum(axis=1)
    recall = matches / float(positives)
    avg_recall = recall.mean(axis=0)
    proposals_per_video = pcn * (float(num_kept) / num_videos)
    area = _trapezoid(avg_recall, proposals_per_video)
    auc = 100. * float(area) / proposals_per_video[-1]
    return recall, avg_recall, proposals_per_video, float(auc)


def anet_ar_an(
    annotations: Mapping[str, Sequence[Mapping]],
    proposals: Mapping[str, Sequence[Mapping]],
    max_avg_proposals: float = 100,
    temporal_iou_thresholds: ArrayLike = _DEFAULT_TIOU_THRESHOLDS,
) -> dict[str, float]:
    """ActivityNet AR@AN, as ``ANetMetric(metric_type='AR@AN')`` reports it.

    Args:
        annotations: video name -> ``[{'segment': [start, end], ...}]``.
        proposals: video name -> ``[{'segment': [start, end], 'score': s}]``.
            Every annotated video must be present. MMAction2 raises on a
            video with no proposals; here it simply matches nothing.
        max_avg_proposals, temporal_iou_thresholds: as in
            ``average_recall_at_avg_proposals`` (MMAction2's defaults).

    Returns:
        ``{'auc', 'AR@1', 'AR@5', 'AR@10', 'AR@100'}``, where ``AR@k`` is the
        recall at grid point k averaged over the thresholds.
    """
    ground_truth = {
        video: np.array([ann['segment'] for ann in anns],
                        dtype=np.float64).reshape(-1, 2)
        for video, anns in annotations.items()
    }
    proposal_arrays = {
        video: np.array([[*p['segment'], p['score']] for p in props],
                        dtype=np.float64).reshape(-1, 3)
        for video, props in proposals.items()
    }
    total = sum(len(props) for props in proposals.values())
    recall, _, _, auc = average_recall_at_avg_proposals(
        ground_truth, proposal_arrays, total,
        max_avg_proposals=max_avg_proposals,
        temporal_iou_thresholds=temporal_iou_thresholds)
    results = {'auc': auc}
    for k in (1, 5, 10, 100):
        results[f'AR@{k}'] = float(np.mean(recall[:, k - 1]))
    return results


def evaluate(scores: ArrayLike, labels: ArrayLike,
             metrics: str | Sequence[str] = ('top_k_accuracy',
                                             'mean_class_accuracy'),
             topk: int | Sequence[int] = (1, 5),
             prefix: str | None = 'acc') -> dict[str, float]:
    """Recognition metrics named as MMAction2 1.2.0's ``AccMetric`` logs them.

    Keys: ``top{k}`` per k, ``mean1``, ``mean_average_precision`` and
    ``mmit_mean_average_precision``, each as ``'{prefix}/{key}'`` (MMAction2's
    default prefix ``'acc'``, e.g. ``'acc/top1'``) or bare if ``prefix`` is
    None.

    Args:
        scores: (n, num_classes) class scores.
        labels: (n, ) class indices, or (n, num_classes) multi-hot. The
            accuracies need indices; the mAPs take indices as one-hot.
        metrics: names from ``ACC_METRICS``.
        topk: k values of ``top_k_accuracy``.
        prefix: key prefix, or None.
    """
    metrics = (metrics, ) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in ACC_METRICS]
    if unknown:
        raise ValueError(f'unknown metrics {unknown}; known: {ACC_METRICS}')
    topk = (topk, ) if isinstance(topk, int) else tuple(topk)
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    multi_hot = labels.ndim == 2

    results = {}
    for metric in metrics:
        if metric in ('top_k_accuracy', 'mean_class_accuracy') and multi_hot:
            raise ValueError(f'{metric} needs class-index labels, '
                             f'got multi-hot labels of shape {labels.shape}')
        if metric == 'top_k_accuracy':
            for k, acc in zip(topk, top_k_accuracy(scores, labels, topk)):
                results[f'top{k}'] = acc
        elif metric == 'mean_class_accuracy':
            results['mean1'] = mean_class_accuracy(scores, labels)
        else:
            targets = labels if multi_hot else np.eye(
                scores.shape[1], dtype=np.float32)[labels]
            fn = (mean_average_precision
                  if metric == 'mean_average_precision' else
                  mmit_mean_average_precision)
            results[metric] = fn(scores, targets)
    if prefix is None:
        return results
    return {f'{prefix}/{key}': value for key, value in results.items()}
