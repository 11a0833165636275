"""Host-side proposal post-processing, as MMAction2 1.2.0 (NumPy, same dtypes and op order).

  temporal_iou, temporal_iop      overlap of one segment with many (or many with many)
  boundary_bins                   start/end candidates: local peaks or above a fraction of max
  bmn_candidates                  BMN: every start/end candidate pair with its fused score
  pem_candidates                  PEM: PGM proposals with PEM-fused scores
  soft_nms, post_processing       Gaussian Soft-NMS, top-k, to [{'segment', 'score'}] in seconds
  SoftNMSConfig                   post_processing's settings, as a model keeps them
  generate_candidate_proposals    BSN's PGM: proposals from a TEM result, with their IoU/IoA
  generate_bsp_feature            BSN's PGM: boundary-sensitive features of those proposals
  generate_pgm                    PGM over a data set: TEM csv files -> proposal csv + feature npy

The loops of MMAction2 are vectorised; dtypes follow its arithmetic (a PEM result is float32,
so its Soft-NMS runs in float32; BMN's is float64), so the numbers are the same.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from action_jax.localization import proposals as io
from action_jax.progress import track


def temporal_iou(proposal_min, proposal_max, gt_min, gt_max) -> np.ndarray:
    """IoU of [proposal_min, proposal_max] with [gt_min, gt_max] (broadcasting)."""
    len_anchors = proposal_max - proposal_min
    int_tmin = np.maximum(proposal_min, gt_min)
    int_tmax = np.minimum(proposal_max, gt_max)
    inter_len = np.maximum(int_tmax - int_tmin, 0.)
    union_len = len_anchors - inter_len + gt_max - gt_min
    return np.divide(inter_len, union_len)


def temporal_iop(proposal_min, proposal_max, gt_min, gt_max) -> np.ndarray:
    """Intersection over the proposal's length (broadcasting)."""
    len_anchors = np.array(proposal_max - proposal_min)
    int_tmin = np.maximum(proposal_min, gt_min)
    int_tmax = np.minimum(proposal_max, gt_max)
    inter_len = np.maximum(int_tmax - int_tmin, 0.)
    return np.divide(inter_len, len_anchors)


def boundary_bins(scores: np.ndarray, threshold: float, always: Sequence[int]) -> np.ndarray:
    """Boundary candidates [T] bool: inner steps that are a strict local maximum or score above
    `threshold * max(scores)`, plus the `always` indices."""
    bins = np.zeros(len(scores), bool)
    bins[list(always)] = True
    inner = scores[1:-1]
    peak = (inner > scores[2:]) & (inner > scores[:-2])
    bins[1:-1] |= peak | (inner > threshold * scores.max())
    return bins


def bmn_candidates(start: np.ndarray, end: np.ndarray, reg_confidence: np.ndarray,
                   cls_confidence: np.ndarray) -> np.ndarray:
    """BMN's candidate proposals of one video, [n, 7] float64 rows
    (tmin, tmax, tmin_score, tmax_score, cls_score, reg_score, score), duration-major.

    Starts may be step 0 or a start candidate, ends step T-1 or an end candidate (threshold
    0.5); a proposal must end before T. score = start * end * cls * reg (float32 product).
    """
    t = len(start)
    start_bins = boundary_bins(start, 0.5, always=(0,))
    end_bins = boundary_bins(end, 0.5, always=(-1,))
    duration, first = (a.ravel() for a in np.indices((t, t)))
    last = first + duration + 1
    keep = last < t
    duration, first, last = duration[keep], first[keep], last[keep]
    keep = start_bins[first] & end_bins[last]
    duration, first, last = duration[keep], first[keep], last[keep]
    tmin_score, tmax_score = start[first], end[last]
    cls_score = cls_confidence[duration, first]
    reg_score = reg_confidence[duration, first]
    score = tmin_score * tmax_score * cls_score * reg_score
    # Promoted to float64 with the normalised times, as MMAction2's list of rows is.
    return np.stack([first / t, last / t, tmin_score, tmax_score, cls_score, reg_score, score],
                    axis=1)


def pem_candidates(pem_score: np.ndarray, sample: Mapping[str, Any]) -> np.ndarray:
    """PEM's proposals of one video, [n, 6] float32 rows
    (tmin, tmax, tmin_score, tmax_score, pem_score, pem_score * tmin_score * tmax_score),
    over the unpadded entries (`proposal_mask`) of the LoadProposals arrays in `sample`."""
    valid = np.asarray(sample.get('proposal_mask', np.ones(len(pem_score), bool)), bool)
    columns = [np.asarray(sample[k], np.float32)[valid]
               for k in ('tmin', 'tmax', 'tmin_score', 'tmax_score')]
    pem = np.asarray(pem_score, np.float32)[valid]
    score = pem * columns[2] * columns[3]
    return np.stack([*columns, pem, score], axis=1)


def soft_nms(proposals: np.ndarray, alpha: float, low_threshold: float, high_threshold: float,
             top_k: int) -> np.ndarray:
    """Gaussian Soft-NMS over rows (start, end, ..., score); returns [k, 3] (start, end, score).

    Repeatedly takes the best remaining proposal; every other one whose IoU with it exceeds
    `low + (high - low) * width(best)` has its score multiplied by exp(-IoU^2 / alpha).
    As MMAction2, it stops after top_k + 1 picks.
    """
    proposals = proposals[proposals[:, -1].argsort()[::-1]]
    start, end = proposals[:, 0], proposals[:, 1]
    score = proposals[:, -1].copy()
    remaining = np.arange(len(proposals))  # kept in list order: argmax takes the first max
    picked = []
    while remaining.size and len(picked) <= top_k:
        position = np.argmax(score[remaining])
        best = remaining[position]
        remaining = np.delete(remaining, position)
        max_width = end[best] - start[best]
        iou = temporal_iou(start[best], end[best], start[remaining], end[remaining])
        decay = iou > low_threshold + (high_threshold - low_threshold) * max_width
        score[remaining[decay]] = score[remaining[decay]] * np.exp(-np.square(iou) / alpha)[decay]
        picked.append(best)
    return np.stack([start[picked], end[picked], score[picked]], axis=1)


class SoftNMSConfig(NamedTuple):
    """post_processing's Soft-NMS settings (a model attribute: hashable, unlike a dict, so the
    model's graphdef can be a static jit argument)."""
    alpha: float
    low_threshold: float
    high_threshold: float
    top_k: int


def post_processing(result: np.ndarray, video_info: Mapping[str, Any], alpha: float,
                    low_threshold: float, high_threshold: float, top_k: int,
                    feature_extraction_interval: int = 16) -> list[dict[str, Any]]:
    """Soft-NMS, then the top_k proposals as [{'score', 'segment': [start_s, end_s]}].

    Normalised times are scaled by the duration the features cover: duration_frame rounded
    down to a multiple of `feature_extraction_interval`, in seconds.
    """
    if len(result) > 1:
        result = soft_nms(result, alpha, low_threshold, high_threshold, top_k)
    result = result[result[:, -1].argsort()[::-1]]
    frames = video_info['duration_frame']
    video_duration = float(frames // feature_extraction_interval
                           * feature_extraction_interval) / frames * video_info['duration_second']
    return [{'score': float(row[-1]),
             'segment': [float(max(0, row[0]) * video_duration),
                         float(min(1, row[1]) * video_duration)]}
            for row in result[:min(top_k, len(result))]]


def normalized_ground_truth(video_info: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Annotated segments in units of the feature-covered duration (BSN's PGM; unclipped)."""
    corrected_second = (float(video_info['feature_frame']) / video_info['duration_frame']
                        * video_info['duration_second'])
    segments = np.array([a['segment'] for a in video_info['annotations']],
                        np.float64).reshape(-1, 2)
    return segments[:, 0] / corrected_second, segments[:, 1] / corrected_second


def generate_candidate_proposals(tem_result: np.ndarray, video_info: Mapping[str, Any],
                                 temporal_scale: int, peak_threshold: float) -> np.ndarray:
    """BSN proposals of one video from its TEM result [T, 5] (float32, as read from csv).

    Start and end candidates (peaks, or above `peak_threshold` of the max, plus both ends),
    placed at step centres, are paired into every proposal with tmin < tmax. Returns
    [n, 7] float64 rows (tmin, tmax, tmin_score, tmax_score, score, match_iou, match_ioa),
    best score first; match_* are the best IoU / IoA with the ground truth (0 without any).
    """
    gap = 1. / temporal_scale
    centres = gap / 2 + gap * np.arange(temporal_scale)
    start_scores, end_scores = tem_result[:, 1], tem_result[:, 2]
    starts = np.flatnonzero(boundary_bins(start_scores, peak_threshold, always=(0, -1)))
    ends = np.flatnonzero(boundary_bins(end_scores, peak_threshold, always=(0, -1)))
    end_idx, start_idx = np.nonzero(centres[starts][None, :] < centres[ends][:, None])
    props = np.stack([centres[starts][start_idx], centres[ends][end_idx],
                      start_scores[starts][start_idx], end_scores[ends][end_idx]],
                     axis=1).astype(np.float64)
    props = np.concatenate([props, (props[:, 2] * props[:, 3])[:, None]], axis=1)
    props = props[props[:, -1].argsort()[::-1]]
    gt_tmins, gt_tmaxs = normalized_ground_truth(video_info)
    if gt_tmins.size:
        args = props[:, :1], props[:, 1:2], gt_tmins[None], gt_tmaxs[None]
        match = [temporal_iou(*args).max(axis=1), temporal_iop(*args).max(axis=1)]
    else:
        match = [np.zeros(len(props))] * 2
    return np.concatenate([props, np.stack(match, axis=1)], axis=1)


def _window_means(t_new: np.ndarray, t_points: np.ndarray, scores: np.ndarray,
                  num_sample: int, num_sample_interp: int) -> np.ndarray:
    """Actionness interpolated at t_new [n, num_sample * interp + 1], averaged over the
    num_sample overlapping windows of interp + 1 points."""
    values = np.interp(t_new, t_points, scores)
    windows = np.lib.stride_tricks.sliding_window_view(values, num_sample_interp + 1, axis=-1)
    return windows[:, ::num_sample_interp][:, :num_sample].mean(axis=-1)


def generate_bsp_feature(tem_result: np.ndarray, pgm_proposals: np.ndarray, top_k: int = 1000,
                         bsp_boundary_ratio: float = 0.2, num_sample_start: int = 8,
                         num_sample_end: int = 8, num_sample_action: int = 16,
                         num_sample_interp: int = 3) -> np.ndarray:
    """Boundary-sensitive features [n, action + start + end samples] of the first `top_k`
    proposals (float32 rows, as read from csv) from a TEM result [T, 5] (float32).

    The actionness curve, zero-padded by T / 4 + 10 steps each side, is sampled over the
    proposal (action) and over +-bsp_boundary_ratio of its length around each boundary.
    """
    score_action = tem_result[:, 0]
    video_scale = len(tem_result)
    video_gap = tem_result[0, 4] - tem_result[0, 3]
    video_extend = int(video_scale / 4 + 10)
    padding = np.zeros([video_extend])
    score_action = np.concatenate((padding, score_action, padding))
    ext = np.arange(video_extend)
    t_points = np.concatenate([
        -video_gap / 2 - (video_extend - 1 - ext).astype(np.float32) * video_gap,
        video_gap / 2 + np.arange(video_scale, dtype=np.float32) * video_gap,
        video_gap / 2 + tem_result[-1, 4] + ext.astype(np.float32) * video_gap])

    proposals = pgm_proposals[:top_k]
    tmin, tmax = proposals[:, :1], proposals[:, 1:2]
    tlen = tmax - tmin

    def sample(begin: np.ndarray, end: np.ndarray, num_sample: int) -> np.ndarray:
        step = (end - begin) / (num_sample - 1)
        offsets = np.arange(num_sample * num_sample_interp + 1, dtype=proposals.dtype)
        t_new = begin - step / 2 + step / num_sample_interp * offsets
        return _window_means(t_new, t_points, score_action, num_sample, num_sample_interp)

    return np.concatenate([
        sample(tmin, tmax, num_sample_action),
        sample(tmin - tlen * bsp_boundary_ratio, tmin + tlen * bsp_boundary_ratio,
               num_sample_start),
        sample(tmax - tlen * bsp_boundary_ratio, tmax + tlen * bsp_boundary_ratio,
               num_sample_end)], axis=1)


def generate_pgm(ann_file: str | os.PathLike, tem_results_dir: str | os.PathLike,
                 pgm_proposals_dir: str | os.PathLike, pgm_features_dir: str | os.PathLike,
                 proposals_cfg: Mapping[str, Any], features_cfg: Mapping[str, Any]) -> int:
    """BSN's proposal generation module over every video of `ann_file` (MMAction2's
    tools/misc/bsn_proposal_generation.py): reads `<tem_results_dir>/<video>.csv`, writes
    `<pgm_proposals_dir>/<video>.csv` and `<pgm_features_dir>/<video>.npy`.

    `proposals_cfg`: temporal_scale, peak_threshold; `features_cfg`: generate_bsp_feature's
    keyword arguments. Thread counts (`*_thread`) are accepted and ignored. Returns the
    number of videos processed.
    """
    proposals_cfg = {k: v for k, v in proposals_cfg.items() if not k.endswith('_thread')}
    features_cfg = {k: v for k, v in features_cfg.items() if not k.endswith('_thread')}
    with open(ann_file) as f:
        database = json.load(f)
    for video_name, video_info in track(database.items(), 'Proposals (PGM)'):
        tem_result = io.load_tem_result(tem_results_dir, video_name)
        proposals = generate_candidate_proposals(tem_result, video_info, **proposals_cfg)
        io.dump_pgm_proposals(pgm_proposals_dir, video_name, proposals)
        # The features are computed from the proposals as stored (float32 after csv).
        stored = io.load_pgm_proposals(pgm_proposals_dir, video_name)
        io.dump_bsp_feature(pgm_features_dir, video_name,
                            generate_bsp_feature(tem_result, stored, **features_cfg))
    return len(database)
