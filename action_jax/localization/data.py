"""ActivityNet-style feature data sets for temporal localization, as MMAction2 1.2.0 reads them.

Annotation file (json): {video_name: {duration_second, duration_frame, feature_frame,
annotations: [{segment: [start_s, end_s], label}], ...}}. Features: one csv per video,
`<data_prefix>/<video_name>.csv`, a header line then [T, feat_dim] rows (MMAction2's csv_mean_100
features are already pooled to T = temporal_dim).

Transforms (config names as MMAction2's; call `t(results, rng=None)`):
  LoadLocalizationFeature     raw_feature [T, feat_dim] float32, channels-last (MMAction2
                              transposes to [feat_dim, T]); optionally pooled to temporal_dim
  GenerateLocalizationLabels  gt_bbox [K, 2]: segments / feature-covered seconds, in [0, 1]
  LoadProposals               BSN PGM proposals + BSP features, padded to top_k
  PackLocalizationInputs      the arrays a batch needs: `inputs`, the requested keys

Variable-length ground truth is packed padded (gt_bbox [max_gt, 2] + num_gt); the models'
host-side `generate_labels` turn it into fixed-shape training targets (`bmn_labels`,
`tem_labels`: MMAction2's `generate_labels`, same float64 arithmetic).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from action_jax.localization import proposals as io
from action_jax.localization.postprocess import temporal_iop, temporal_iou


class ActivityNetDataset:
    """MMAction2's ActivityNetDataset: one entry per video of the annotation json.

    Each entry is the video's annotation dict plus `video_name` and `feature_path`;
    `dataset[i]` returns a fresh copy for the pipeline. `pipeline` belongs to the loader.
    """

    def __init__(self, ann_file: str | os.PathLike,
                 data_prefix: Mapping[str, Any] | str | os.PathLike | None = None,
                 test_mode: bool = False):
        self.ann_file = os.fspath(ann_file)
        prefix = data_prefix.get('video', '') if isinstance(data_prefix, Mapping) else data_prefix
        self.data_prefix = {'video': os.fspath(prefix or '')}
        self.test_mode = test_mode
        with open(self.ann_file) as f:
            database = json.load(f)
        self.data_list = [
            dict(info, video_name=name,
                 feature_path=os.path.join(self.data_prefix['video'], name + '.csv'))
            for name, info in database.items()]

    def __len__(self) -> int:
        return len(self.data_list)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return copy.deepcopy(self.data_list[index])

    def annotations(self) -> dict[str, list[dict[str, Any]]]:
        """{video_name: annotations}, the ground truth of `evaluation.metrics.anet_ar_an`."""
        return {info['video_name']: info['annotations'] for info in self.data_list}

    def __repr__(self) -> str:
        return f'ActivityNetDataset({self.ann_file!r}, {len(self)} videos)'


def pool_feature(data: np.ndarray, num_proposals: int = 100, num_sample_bins: int = 3,
                 pool_type: str = 'mean') -> np.ndarray:
    """Resamples features [T, C] to [num_proposals, C] (MMAction2's ActivityNet feature
    post-processing): each output step pools `num_sample_bins` linearly interpolated points
    of its 1/num_proposals share of [eps, T - 1 - eps]. Float64."""
    if pool_type not in ('mean', 'max'):
        raise NotImplementedError(f'Unsupported pool type {pool_type!r}')
    data = np.asarray(data, np.float64)
    if len(data) == 1:
        return np.concatenate([data] * num_proposals)
    eps = 1e-4
    start, end = eps, len(data) - 1 - eps
    anchor_size = (end - start) / num_proposals
    anchors = [start]
    for _ in range(num_proposals - 1):  # accumulated like MMAction2's `ptr += anchor_size`
        anchors.append(anchors[-1] + anchor_size)
    x = np.array([[ptr + i / num_sample_bins * anchor_size for i in range(num_sample_bins)]
                  for ptr in anchors])
    # scipy's interp1d(kind='linear') on the grid 0..T-1: the segment left of searchsorted.
    grid = np.arange(len(data), dtype=np.float64)
    high = np.clip(np.searchsorted(grid, x), 1, len(data) - 1)
    low = high - 1
    slope = (data[high] - data[low]) / (grid[high] - grid[low])[..., None]
    values = slope * (x - grid[low])[..., None] + data[low]
    return values.mean(axis=1) if pool_type == 'mean' else values.max(axis=1)


class LoadLocalizationFeature:
    """raw_feature [T, feat_dim] float32 from `feature_path`; with `temporal_dim`, a sequence of
    another length is pooled to it (`pool_feature`; MMAction2 expects pre-pooled csvs)."""

    def __init__(self, temporal_dim: int | None = None):
        self.temporal_dim = temporal_dim

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        feature = np.loadtxt(results['feature_path'], dtype=np.float32, delimiter=',',
                             skiprows=1, ndmin=2)
        if self.temporal_dim is not None and len(feature) != self.temporal_dim:
            feature = pool_feature(feature, self.temporal_dim).astype(np.float32)
        results['raw_feature'] = feature
        return results

    def __repr__(self) -> str:
        return f'LoadLocalizationFeature(temporal_dim={self.temporal_dim})'


class GenerateLocalizationLabels:
    """gt_bbox [K, 2] float64: each annotated segment over the seconds the features cover,
    clipped to [0, 1]."""

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        corrected_second = (float(results['feature_frame']) / results['duration_frame']
                            * results['duration_second'])
        segments = np.array([a['segment'] for a in results['annotations']],
                            np.float64).reshape(-1, 2)
        results['gt_bbox'] = np.clip(segments / corrected_second, 0, 1)
        return results

    def __repr__(self) -> str:
        return 'GenerateLocalizationLabels()'


class LoadProposals:
    """The first `top_k` PGM proposals of the video and their BSP features.

    Adds tmin, tmax, tmin_score, tmax_score, reference_temporal_iou [top_k] and
    bsp_feature [top_k, feat] (float32), zero-padded to top_k, and proposal_mask [top_k]
    (False on padding) so that batches have one shape.
    """

    def __init__(self, top_k: int, pgm_proposals_dir: str, pgm_features_dir: str,
                 proposal_ext: str = '.csv', feature_ext: str = '.npy'):
        if proposal_ext != '.csv' or feature_ext != '.npy':
            raise NotImplementedError('LoadProposals reads .csv proposals and .npy features')
        self.top_k = top_k
        self.pgm_proposals_dir = pgm_proposals_dir
        self.pgm_features_dir = pgm_features_dir

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        name = results['video_name']
        proposals = io.load_pgm_proposals(self.pgm_proposals_dir, name)[:self.top_k]
        feature = io.load_bsp_feature(self.pgm_features_dir, name)[:self.top_k]
        arrays = {'tmin': proposals[:, 0], 'tmax': proposals[:, 1],
                  'tmin_score': proposals[:, 2], 'tmax_score': proposals[:, 3],
                  'reference_temporal_iou': proposals[:, 5], 'bsp_feature': feature}
        pad = self.top_k - len(proposals)
        for key, value in arrays.items():
            results[key] = np.pad(value, [(0, pad)] + [(0, 0)] * (value.ndim - 1))
        results['proposal_mask'] = np.arange(self.top_k) < len(proposals)
        return results

    def __repr__(self) -> str:
        return (f'LoadProposals(top_k={self.top_k}, pgm_proposals_dir={self.pgm_proposals_dir!r}'
                f', pgm_features_dir={self.pgm_features_dir!r})')


class PackLocalizationInputs:
    """The batch arrays: `inputs` (raw_feature; BSN's PEM reads bsp_feature instead) and the
    `keys` present in the results. gt_bbox is padded to `max_gt` rows, with `num_gt`;
    proposal_mask comes along whenever present. `meta_keys` are accepted for config
    compatibility: a JAX batch holds arrays only, so look video info up by index."""

    def __init__(self, keys: Sequence[str] = (), meta_keys: Sequence[str] = ('video_name',),
                 max_gt: int = 64):
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)
        self.max_gt = max_gt

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        packed: dict[str, np.ndarray] = {}
        if 'raw_feature' in results:
            packed['inputs'] = np.asarray(results['raw_feature'])
        elif 'bsp_feature' not in results:
            raise ValueError('PackLocalizationInputs needs "raw_feature" or "bsp_feature" in '
                             f'the results; got {sorted(results)}')
        for key in (*self.keys, 'proposal_mask'):
            if key not in results:
                continue
            if key == 'gt_bbox':
                packed['gt_bbox'], packed['num_gt'] = self._pad_gt(results)
            else:
                packed[key] = np.asarray(results[key])
        return packed

    def _pad_gt(self, results: Mapping[str, Any]) -> tuple[np.ndarray, np.int32]:
        gt_bbox = np.asarray(results['gt_bbox'], np.float64).reshape(-1, 2)
        if len(gt_bbox) > self.max_gt:
            raise ValueError(f'{results.get("video_name", "?")}: {len(gt_bbox)} ground-truth '
                             f'segments exceed PackLocalizationInputs max_gt={self.max_gt}')
        return np.pad(gt_bbox, [(0, self.max_gt - len(gt_bbox)), (0, 0)]), np.int32(len(gt_bbox))

    def __repr__(self) -> str:
        return f'PackLocalizationInputs(keys={self.keys}, meta_keys={self.meta_keys})'


def _max_over_gt(values: np.ndarray, size: int) -> np.ndarray:
    """Max over the ground-truth axis 0; zeros for a video without ground truth."""
    return values.max(axis=0) if len(values) else np.zeros(size)


def bmn_labels(gt_bbox: np.ndarray, temporal_dim: int) -> dict[str, np.ndarray]:
    """BMN's training targets of one video (MMAction2's `BMN.generate_labels`).

    gt_iou_map [D, T]: IoU of proposal (duration d + 1, start s) = [s/T, (s + d + 1)/T] with
    its best ground-truth segment. gt_start, gt_end [T]: the largest fraction of the anchor
    [(i - 0.5)/T, (i + 1.5)/T] covered by a 3/T-wide window around a ground-truth start / end.
    """
    gt_bbox = np.asarray(gt_bbox, np.float64).reshape(-1, 2)
    t = temporal_dim
    gap = 1. / t
    start, duration = np.indices((t, t))
    tmin = gap * start
    tmax = tmin + gap * (duration + 1)
    # [K, D, T]: the match map is stored duration-major.
    iou = temporal_iou(tmin.T[None], tmax.T[None], gt_bbox[:, 0, None, None],
                       gt_bbox[:, 1, None, None]).astype(np.float32)
    gt_iou_map = _max_over_gt(iou, (t, t)).astype(np.float32)

    steps = np.arange(t)
    anchor_tmin, anchor_tmax = gap * (steps + -0.5), gap * (steps + 1.5)
    pad = 3 * gap
    labels = {'gt_iou_map': gt_iou_map}
    for name, boundary in (('gt_start', gt_bbox[:, 0]), ('gt_end', gt_bbox[:, 1])):
        iop = temporal_iop(anchor_tmin, anchor_tmax, (boundary - pad / 2)[:, None],
                           (boundary + pad / 2)[:, None])
        labels[name] = _max_over_gt(iop, t).astype(np.float32)
    return labels


def tem_labels(gt_bbox: np.ndarray, temporal_dim: int,
               boundary_ratio: float) -> dict[str, np.ndarray]:
    """TEM's training targets of one video (MMAction2's `TEM.generate_labels`), each [T]:
    the largest fraction of anchor [i/T, (i+1)/T] covered by a ground-truth segment
    (label_action) or by a window of max(1/T, boundary_ratio * length) around its start
    (label_start) or end (label_end)."""
    gt_bbox = np.asarray(gt_bbox, np.float64).reshape(-1, 2)
    t = temporal_dim
    gap = 1. / t
    steps = np.arange(t)
    anchor_tmin, anchor_tmax = gap * (steps + 0.), gap * (steps + 1.)
    gt_tmins, gt_tmaxs = gt_bbox[:, 0], gt_bbox[:, 1]
    pad = np.maximum(1. / t, boundary_ratio * (gt_tmaxs - gt_tmins))
    windows = {'label_action': (gt_tmins, gt_tmaxs),
               'label_start': (gt_tmins - pad / 2, gt_tmins + pad / 2),
               'label_end': (gt_tmaxs - pad / 2, gt_tmaxs + pad / 2)}
    return {name: _max_over_gt(temporal_iop(anchor_tmin, anchor_tmax, lo[:, None], hi[:, None]),
                               t).astype(np.float32)
            for name, (lo, hi) in windows.items()}


def batch_labels(label_fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
                 gt_bbox: Sequence[np.ndarray] | np.ndarray,
                 num_gt: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`label_fn` over a batch of videos, stacked. gt_bbox: one [K_i, 2] array per video, or a
    packed [N, max_gt, 2] batch whose first num_gt[i] rows are video i's segments."""
    if num_gt is not None:
        gt_bbox = [np.asarray(b)[:int(n)] for b, n in zip(gt_bbox, num_gt)]
    labels = [label_fn(b) for b in gt_bbox]
    return {key: np.stack([item[key] for item in labels]) for key in labels[0]}
