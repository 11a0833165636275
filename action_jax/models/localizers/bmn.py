"""BMN: Boundary-Matching Network for temporal action proposals (Lin et al., ICCV 2019).

MMAction2's `BMN`, channels-last. A video is a feature sequence x [N, T, feat_dim]; every
candidate proposal is a (duration d, start s) cell of a T x T boundary-matching map and
spans [s, s + d + 1) on the T-step grid.

  Base module                  x_1d_b: two grouped 1D convs
  Temporal evaluation module   x_1d_s, x_1d_e: start / end probability per step
  Proposal evaluation module   x_1d_p -> boundary-matching layer (sample every proposal's
                               features at num_samples points) -> x_3d_p (fold the samples)
                               -> x_2d_p -> confidence map, 2 channels per proposal:
                               regression (IoU) and classification score
"""
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.localization.data import batch_labels, bmn_labels
from action_jax.localization.postprocess import SoftNMSConfig, bmn_candidates, post_processing
from action_jax.models.export_spec import (FEATURES_FIXED, FEATURES_METADATA, STEPS_INPUT,
                                           ExportSpec, Output, localizer_export_mode)
from action_jax.models.localizers.layers import Buffer, conv, sequential
from action_jax.models.localizers.losses import bmn_loss, check_loss_cfg


class BMNOutput(NamedTuple):
    """BMN's outputs (logits from `__call__`, probabilities from `predict`).

    confidence_map: [N, D, T, 2], indexed [n, duration - 1, start, channel]; channel 0 is the
        regression score, 1 the classification score (MMAction2's [N, 2, D, T], channels last).
    start, end: [N, T].
    """
    confidence_map: jax.Array
    start: jax.Array
    end: jax.Array


def interp1d_sample_mask(temporal_dim: int, boundary_ratio: float, num_samples: int,
                         num_samples_per_bin: int) -> np.ndarray:
    """The boundary-matching layer's sampling weights, [T, num_samples * T * T] float32.

    Column (k, d, s) holds the weights over the T positions of sample point k of proposal
    (duration d, start s): the proposal is widened by `boundary_ratio` of its length on each
    side, split into `num_samples` bins of `num_samples_per_bin` points each, and every point
    interpolates linearly between its two neighbouring positions. Proposals that end past the
    video are all zero. Same float64 arithmetic as MMAction2's `_get_interp1d_mask`, including
    its `math.modf` handling of points just left of 0, so the float32 result is identical.
    """
    t = temporal_dim
    points_per_proposal = num_samples * num_samples_per_bin
    mask = np.zeros((t, num_samples, t, t), np.float32)  # [position, sample, duration, start]
    bins = np.arange(num_samples)
    for start in range(t):
        durations = np.arange(t - start)
        center_len = durations.astype(np.float64) + 1
        sample_tmin = start - center_len * boundary_ratio
        sample_tmax = (start + durations) + center_len * boundary_ratio
        step = (sample_tmax - sample_tmin) / (points_per_proposal - 1.0)
        weights = np.zeros((durations.size, num_samples, t))
        rows = durations[:, None], bins[None, :]
        for j in range(num_samples_per_bin):
            point = sample_tmin[:, None] + step[:, None] * (bins * num_samples_per_bin + j)
            frac, down = np.modf(point)
            for index, weight in ((down, 1 - frac), (np.ceil(point), frac)):
                index = index.astype(np.int64)  # int() truncates toward zero, like astype
                inside = (index >= 0) & (index <= t - 1)
                weights[(*rows, np.clip(index, 0, t - 1))] += np.where(inside, weight, 0.0)
        weights = 1.0 / num_samples_per_bin * weights
        mask[:, :, durations, start] = weights.transpose(2, 1, 0)
    return mask.reshape(t, -1)


def boundary_matching_mask(temporal_dim: int) -> np.ndarray:
    """bm_mask [D, T]: 1 where the proposal (duration d + 1, start s) ends inside the video."""
    d, s = np.indices((temporal_dim, temporal_dim))
    return (s + d < temporal_dim).astype(np.float32)


class BMN(nnx.Module):
    """MMAction2's BMN (same arguments; `loss_cls` must be BMNLoss).

    `__call__(x [N, T, feat_dim])` -> BMNOutput of logits (MMAction2's `mode='tensor'` before
    its sigmoids); `predict(batch)` -> probabilities; `loss(batch, rng)`; host-side
    `generate_labels` (training targets) and `post_process` (Soft-NMS'ed proposals).
    """

    def __init__(self, temporal_dim: int, boundary_ratio: float, num_samples: int,
                 num_samples_per_bin: int, feat_dim: int, soft_nms_alpha: float,
                 soft_nms_low_threshold: float, soft_nms_high_threshold: float,
                 post_process_top_k: int, feature_extraction_interval: int = 16,
                 loss_cls: Mapping[str, Any] | None = None, hidden_dim_1d: int = 256,
                 hidden_dim_2d: int = 128, hidden_dim_3d: int = 512, *,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        check_loss_cfg(loss_cls, 'BMNLoss')
        self.temporal_dim = temporal_dim
        self.feat_dim = feat_dim
        self.num_samples = num_samples
        self.soft_nms = SoftNMSConfig(soft_nms_alpha, soft_nms_low_threshold,
                                      soft_nms_high_threshold, post_process_top_k)
        self.feature_extraction_interval = feature_extraction_interval
        self.sample_mask = Buffer(jnp.asarray(interp1d_sample_mask(
            temporal_dim, boundary_ratio, num_samples, num_samples_per_bin)))
        self.bm_mask = Buffer(jnp.asarray(boundary_matching_mask(temporal_dim)))

        h1, h2, h3 = hidden_dim_1d, hidden_dim_2d, hidden_dim_3d
        kw = dict(dtype=dtype, rngs=rngs)
        relu = nnx.relu
        # Base module.
        self.x_1d_b = nnx.List([conv(feat_dim, h1, (3,), 1, groups=4, **kw), relu,
                                conv(h1, h1, (3,), 1, groups=4, **kw), relu])
        # Temporal evaluation module: start and end logits per step.
        self.x_1d_s = nnx.List([conv(h1, h1, (3,), 1, groups=4, **kw), relu,
                                conv(h1, 1, (1,), **kw)])
        self.x_1d_e = nnx.List([conv(h1, h1, (3,), 1, groups=4, **kw), relu,
                                conv(h1, 1, (1,), **kw)])
        # Proposal evaluation module.
        self.x_1d_p = nnx.List([conv(h1, h1, (3,), 1, **kw), relu])
        self.x_3d_p = nnx.List([conv(h1, h3, (num_samples, 1, 1), **kw), relu])
        self.x_2d_p = nnx.List([conv(h3, h2, (1, 1), **kw), relu,
                                conv(h2, h2, (3, 3), 1, **kw), relu,
                                conv(h2, h2, (3, 3), 1, **kw), relu,
                                conv(h2, 2, (1, 1), **kw)])

    def boundary_matching_layer(self, x: jax.Array) -> jax.Array:
        """[N, T, C] -> [N, num_samples, D, T, C]: every proposal's features at its samples."""
        n, t, c = x.shape
        sampled = jnp.einsum('ntc,tm->nmc', x, self.sample_mask[...].astype(x.dtype))
        return sampled.reshape(n, self.num_samples, t, t, c)

    def __call__(self, x: jax.Array) -> BMNOutput:
        base = sequential(self.x_1d_b, x)
        start = sequential(self.x_1d_s, base)[..., 0]
        end = sequential(self.x_1d_e, base)[..., 0]
        bm_features = self.boundary_matching_layer(sequential(self.x_1d_p, base))
        confidence_map = sequential(self.x_3d_p, bm_features)[:, 0]
        confidence_map = sequential(self.x_2d_p, confidence_map)
        return BMNOutput(confidence_map, start, end)

    def predict(self, batch: Mapping[str, jax.Array]) -> BMNOutput:
        """Probabilities (float32) for batch['inputs'] [N, T, feat_dim]."""
        logits = self(batch['inputs'])
        return BMNOutput(*(jax.nn.sigmoid(v.astype(jnp.float32)) for v in logits))

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            kind='localizer', model='BMN', layouts={2: 'N,T,C'}, input=STEPS_INPUT,
            outputs=(Output('confidence_map', 'N,D,T,2',
                            '[n, d, s]: proposal of start s, duration d + 1; channel 0 '
                            'regression (IoU), 1 classification'),
                     Output('start', 'N,T', 'start probability per step'),
                     Output('end', 'N,T', 'end probability per step')),
            shape=(self.temporal_dim, self.feat_dim),
            fixed=(f'its sampling mask fixes T to temporal_dim={self.temporal_dim}',
                   FEATURES_FIXED),
            metadata={**FEATURES_METADATA, 'temporal_dim': str(self.temporal_dim)})

    def export_outputs(self, x: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(self.predict({'inputs': x}))

    def prepare_export(self, softmax: bool = False) -> None:
        localizer_export_mode(self, softmax)

    def loss(self, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """BMNLoss on the batch's `generate_labels` targets; rng drives its sampling."""
        pred = self.predict(batch)
        loss, parts = bmn_loss(pred.confidence_map, pred.start, pred.end, batch['gt_iou_map'],
                               batch['gt_start'], batch['gt_end'], self.bm_mask[...], rng)
        return loss, {'loss': loss, **parts}

    def generate_labels(self, gt_bbox: Sequence[np.ndarray] | np.ndarray,
                        num_gt: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Host-side training targets gt_iou_map [N, D, T], gt_start and gt_end [N, T]
        (float32) from normalised ground-truth segments: one [K_i, 2] array per video, or the
        packed gt_bbox [N, max_gt, 2] and num_gt [N] of PackLocalizationInputs."""
        return batch_labels(functools.partial(bmn_labels, temporal_dim=self.temporal_dim),
                            gt_bbox, num_gt)

    def post_process(self, prediction: BMNOutput,
                     sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One video's proposals, [{'segment': [t0, t1] seconds, 'score'}], best first.

        `prediction`: this video's `predict` output (host arrays, no batch axis); `sample`:
        its annotation entry (duration_frame, duration_second).
        """
        conf = np.asarray(prediction.confidence_map)
        candidates = bmn_candidates(np.asarray(prediction.start), np.asarray(prediction.end),
                                    reg_confidence=conf[..., 0], cls_confidence=conf[..., 1])
        return post_processing(candidates, sample, **self.soft_nms._asdict(),
                               feature_extraction_interval=self.feature_extraction_interval)
