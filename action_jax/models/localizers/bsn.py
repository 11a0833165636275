"""BSN: Boundary-Sensitive Network (Lin et al., ECCV 2018), as MMAction2's `TEM` and `PEM`.

BSN runs in three stages:
  TEM  temporal evaluation: per-step actionness, start and end probabilities of a
       feature sequence x [N, T, tem_feat_dim] (channels-last).
  PGM  proposal generation (no parameters, `action_jax.localization.postprocess`): pairs
       start and end peaks into candidate proposals and samples each one's
       boundary-sensitive feature (BSP) from the actionness curve.
  PEM  proposal evaluation: an MLP scoring each proposal's BSP feature by its expected IoU.
"""
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.localization.data import batch_labels, tem_labels
from action_jax.localization.postprocess import SoftNMSConfig, pem_candidates, post_processing
from action_jax.models.export_spec import (FEATURES_FIXED, FEATURES_METADATA, STEPS_INPUT,
                                           ExportSpec, Output, localizer_export_mode)
from action_jax.models.localizers.layers import conv, linear
from action_jax.models.localizers.losses import check_loss_cfg, pem_loss, tem_loss


class TEM(nnx.Module):
    """Temporal Evaluation Module: three 1D convs, x [N, T, C] -> logits [N, T, 3].

    Output channels are actionness, start, end. The `conv*_ratio` scalings are MMAction2's
    (the last one, 0.01, keeps the initial probabilities near 0.5).
    """

    def __init__(self, temporal_dim: int, boundary_ratio: float, tem_feat_dim: int,
                 tem_hidden_dim: int, tem_match_threshold: float,
                 loss_cls: Mapping[str, Any] | None = None, loss_weight: float = 2,
                 output_dim: int = 3, conv1_ratio: float = 1, conv2_ratio: float = 1,
                 conv3_ratio: float = 0.01, *, dtype=jnp.float32, rngs: nnx.Rngs):
        check_loss_cfg(loss_cls, 'BinaryLogisticRegressionLoss')
        self.temporal_dim = temporal_dim
        self.feat_dim = tem_feat_dim
        self.boundary_ratio = boundary_ratio
        self.match_threshold = tem_match_threshold
        self.loss_weight = loss_weight
        self.ratios = (conv1_ratio, conv2_ratio, conv3_ratio)
        kw = dict(dtype=dtype, rngs=rngs)
        self.conv1 = conv(tem_feat_dim, tem_hidden_dim, (3,), 1, **kw)
        self.conv2 = conv(tem_hidden_dim, tem_hidden_dim, (3,), 1, **kw)
        self.conv3 = conv(tem_hidden_dim, output_dim, (1,), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        r1, r2, r3 = self.ratios
        x = nnx.relu(r1 * self.conv1(x))
        x = nnx.relu(r2 * self.conv2(x))
        return r3 * self.conv3(x)

    def predict(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """Probabilities [N, T, 3] (actionness, start, end) for batch['inputs']."""
        return jax.nn.sigmoid(self(batch['inputs']).astype(jnp.float32))

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            kind='localizer', model='TEM', layouts={2: 'N,T,C'}, input=STEPS_INPUT,
            outputs=(Output('action', 'N,T', 'actionness probability per step'),
                     Output('start', 'N,T', 'start probability per step'),
                     Output('end', 'N,T', 'end probability per step')),
            shape=(self.temporal_dim, self.feat_dim), fixed=(None, FEATURES_FIXED),
            metadata={**FEATURES_METADATA, 'temporal_dim': str(self.temporal_dim)})

    def export_outputs(self, x: jax.Array) -> tuple[jax.Array, ...]:
        probs = self.predict({'inputs': x})
        return tuple(probs[..., i] for i in range(probs.shape[-1]))

    def prepare_export(self, softmax: bool = False) -> None:
        if self.conv3.out_features != 3:
            raise ValueError(f'TEM with output_dim={self.conv3.out_features} cannot be '
                             'exported: its outputs are action, start and end')
        localizer_export_mode(self, softmax)

    def loss(self, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Sum of MMAction2's loss_action (x loss_weight), loss_start and loss_end; `rng` is
        unused (the signature is shared with BMN's)."""
        losses = tem_loss(self.predict(batch), batch, self.match_threshold, self.loss_weight)
        total = sum(losses.values())
        return total, {'loss': total, **losses}

    def generate_labels(self, gt_bbox: Sequence[np.ndarray] | np.ndarray,
                        num_gt: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Host-side targets label_action/label_start/label_end [N, T] (float32); gt_bbox as
        in BMN.generate_labels."""
        return batch_labels(functools.partial(tem_labels, temporal_dim=self.temporal_dim,
                                              boundary_ratio=self.boundary_ratio),
                            gt_bbox, num_gt)

    def post_process(self, prediction: np.ndarray,
                     sample: Mapping[str, Any] | None = None) -> np.ndarray:
        """One video's TEM result [T, 5]: action, start, end, tmin, tmax (MMAction2's csv rows);
        the anchors are the T steps [i/T, (i+1)/T)."""
        gap = 1. / self.temporal_dim
        steps = np.arange(self.temporal_dim, dtype=np.float64)
        prediction = np.asarray(prediction)
        return np.stack([prediction[:, 0], prediction[:, 1], prediction[:, 2],
                         gap * steps, gap * (steps + 1)], axis=1)


class PEM(nnx.Module):
    """Proposal Evaluation Module: BSP features [..., pem_feat_dim] -> IoU logits [..., 1].

    The hidden layer is relu(fc1_ratio * fc1(x)), the output fc2_ratio * fc2(h).
    `pem_u_ratio_*` and the IoU thresholds are accepted as MMAction2 does but, as there, have
    no effect on the loss (see `losses.pem_loss`).
    """

    def __init__(self, pem_feat_dim: int, pem_hidden_dim: int, pem_u_ratio_m: float,
                 pem_u_ratio_l: float, pem_high_temporal_iou_threshold: float,
                 pem_low_temporal_iou_threshold: float, soft_nms_alpha: float,
                 soft_nms_low_threshold: float, soft_nms_high_threshold: float,
                 post_process_top_k: int, feature_extraction_interval: int = 16,
                 fc1_ratio: float = 0.1, fc2_ratio: float = 0.1, output_dim: int = 1, *,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.soft_nms = SoftNMSConfig(soft_nms_alpha, soft_nms_low_threshold,
                                      soft_nms_high_threshold, post_process_top_k)
        self.feature_extraction_interval = feature_extraction_interval
        self.feat_dim = pem_feat_dim
        self.ratios = (fc1_ratio, fc2_ratio)
        kw = dict(dtype=dtype, rngs=rngs)
        self.fc1 = linear(pem_feat_dim, pem_hidden_dim, **kw)
        self.fc2 = linear(pem_hidden_dim, output_dim, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        r1, r2 = self.ratios
        return r2 * self.fc2(nnx.relu(r1 * self.fc1(x)))

    def predict(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """IoU scores [N, P] for batch['bsp_feature'] [N, P, pem_feat_dim]."""
        return jax.nn.sigmoid(self(batch['bsp_feature']).astype(jnp.float32))[..., 0]

    def export_spec(self) -> ExportSpec:
        return ExportSpec(
            kind='localizer', model='PEM', layouts={2: 'N,P,C'},
            input='BSP features of P proposals (LoadProposals, zero-padded to top_k)',
            outputs=(Output('iou_scores', 'N,P', 'expected IoU of each proposal'),),
            shape=('proposals', self.feat_dim), fixed=(None, FEATURES_FIXED),
            metadata=FEATURES_METADATA)

    def export_outputs(self, x: jax.Array) -> tuple[jax.Array, ...]:
        return (self.predict({'bsp_feature': x}),)

    def prepare_export(self, softmax: bool = False) -> None:
        localizer_export_mode(self, softmax)

    def loss(self, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Smooth-L1 to `reference_temporal_iou` over the unpadded proposals; `rng` unused."""
        loss = pem_loss(self.predict(batch), batch['reference_temporal_iou'],
                        batch['proposal_mask'])
        return loss, {'loss': loss, 'temporal_iou_loss': loss}

    def post_process(self, prediction: np.ndarray,
                     sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One video's proposals from its PEM scores [P] and its `sample` (the LoadProposals
        arrays tmin, tmax, tmin_score, tmax_score, proposal_mask, and duration_frame,
        duration_second); score = pem * tmin_score * tmax_score, then Soft-NMS."""
        candidates = pem_candidates(np.asarray(prediction), sample)
        return post_processing(candidates, sample, **self.soft_nms._asdict(),
                               feature_extraction_interval=self.feature_extraction_interval)
