"""The localizers' losses, as MMAction2 1.2.0 computes them (pure jnp, float32).

Scores are probabilities (after the sigmoid), like MMAction2's, because the losses take
`log(p + eps)` rather than a log-sigmoid: the same numbers, including the eps.
  binary_logistic_regression_loss   TEM, and BMN's temporal evaluation part
  bmn_loss                          BMNLoss: tem + 10 * pem_reg + pem_cls
  pem_loss                          PEM's temporal-IoU regression
Edge cases follow PyTorch's arithmetic (a 0/0 sampling ratio compares false, x/0 = inf
compares true), which jnp reproduces.
"""
from collections.abc import Mapping

import jax
import jax.numpy as jnp


def binary_logistic_regression_loss(score: jax.Array, label: jax.Array, threshold: float = 0.5,
                                    ratio_range: tuple[float, float] = (1.05, 21),
                                    eps: float = 1e-5) -> jax.Array:
    """Class-balanced binary log loss over all entries (MMAction2's BinaryLogisticRegressionLoss).

    Entries with `label > threshold` are positives; positives and negatives are weighted so
    that each side counts about half, with the entries/positives ratio clipped to `ratio_range`.
    """
    score = score.reshape(-1).astype(jnp.float32)
    pmask = (label.reshape(-1) > threshold).astype(jnp.float32)
    num_positive = jnp.maximum(pmask.sum(), 1.0)
    ratio = jnp.clip(pmask.size / num_positive, *ratio_range)
    coef_0 = 0.5 * ratio / (ratio - 1)
    coef_1 = 0.5 * ratio
    loss = (coef_1 * pmask * jnp.log(score + eps)
            + coef_0 * (1.0 - pmask) * jnp.log(1.0 - score + eps))
    return -jnp.mean(loss)


def pem_reg_loss(pred_score: jax.Array, gt_iou_map: jax.Array, mask: jax.Array, rng: jax.Array,
                 high_temporal_iou_threshold: float = 0.7,
                 low_temporal_iou_threshold: float = 0.3) -> jax.Array:
    """BMN's proposal regression loss: half the squared IoU error on a balanced sample.

    All proposals with IoU > high count; medium (low, high] and low (0, low] ones are each
    sampled at random down to about as many as the high ones. The draws are
    `jax.random.uniform(rng, (2, *gt_iou_map.shape))`: [0] samples medium, [1] low ones.
    """
    u_hmask = (gt_iou_map > high_temporal_iou_threshold).astype(jnp.float32)
    u_mmask = ((gt_iou_map <= high_temporal_iou_threshold)
               & (gt_iou_map > low_temporal_iou_threshold)).astype(jnp.float32)
    u_lmask = ((gt_iou_map <= low_temporal_iou_threshold)
               & (gt_iou_map > 0.)).astype(jnp.float32) * mask
    num_h = u_hmask.sum()
    draws = jax.random.uniform(rng, (2, *gt_iou_map.shape))

    def subsample(candidates: jax.Array, draw: jax.Array) -> jax.Array:
        keep_ratio = num_h / candidates.sum()
        return (candidates * draw > 1. - keep_ratio).astype(jnp.float32)

    weights = u_hmask + subsample(u_mmask, draws[0]) + subsample(u_lmask, draws[1])
    mse = jnp.mean(jnp.square(pred_score * weights - gt_iou_map * weights))
    # MMAction2: 0.5 * sum(mse * ones_like(weights)) / sum(weights).
    return 0.5 * mse * weights.size / weights.sum()


def pem_cls_loss(pred_score: jax.Array, gt_iou_map: jax.Array, mask: jax.Array,
                 threshold: float = 0.9, ratio_range: tuple[float, float] = (1.05, 21),
                 eps: float = 1e-5) -> jax.Array:
    """BMN's proposal classification loss: balanced log loss, positives at IoU > threshold."""
    pmask = (gt_iou_map > threshold).astype(jnp.float32)
    nmask = (gt_iou_map <= threshold).astype(jnp.float32) * mask
    num_positive = jnp.maximum(pmask.sum(), 1.0)
    num_entries = num_positive + nmask.sum()
    ratio = jnp.clip(num_entries / num_positive, *ratio_range)
    coef_0 = 0.5 * ratio / (ratio - 1)
    coef_1 = 0.5 * ratio
    loss_pos = coef_1 * jnp.log(pred_score + eps) * pmask
    loss_neg = coef_0 * jnp.log(1.0 - pred_score + eps) * nmask
    return -jnp.sum(loss_pos + loss_neg) / num_entries


def bmn_loss(pred_bm: jax.Array, pred_start: jax.Array, pred_end: jax.Array,
             gt_iou_map: jax.Array, gt_start: jax.Array, gt_end: jax.Array,
             bm_mask: jax.Array, rng: jax.Array, weight_tem: float = 1.0,
             weight_pem_reg: float = 10.0,
             weight_pem_cls: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MMAction2's BMNLoss.

    Args:
        pred_bm: [N, D, T, 2] confidence map probabilities (channel 0 regression, 1 class).
        pred_start, pred_end: [N, T] boundary probabilities.
        gt_iou_map: [N, D, T] max IoU of each (duration, start) proposal with the ground truth.
        gt_start, gt_end: [N, T] boundary match scores.
        bm_mask: [D, T], 1 where the proposal ends inside the video.
        rng: drives the sampling of medium and low IoU proposals in the regression loss.

    Returns:
        (loss, {'tem_loss', 'pem_reg_loss', 'pem_cls_loss'}).
    """
    pred_bm = pred_bm.astype(jnp.float32)
    gt_iou_map = gt_iou_map * bm_mask
    reg = pem_reg_loss(pred_bm[..., 0], gt_iou_map, bm_mask, rng)
    cls = pem_cls_loss(pred_bm[..., 1], gt_iou_map, bm_mask)
    tem = (binary_logistic_regression_loss(pred_start, gt_start)
           + binary_logistic_regression_loss(pred_end, gt_end))
    loss = weight_tem * tem + weight_pem_reg * reg + weight_pem_cls * cls
    return loss, {'tem_loss': tem, 'pem_reg_loss': reg, 'pem_cls_loss': cls}


def tem_loss(pred: jax.Array, labels: Mapping[str, jax.Array], match_threshold: float,
             loss_weight: float = 2.0) -> dict[str, jax.Array]:
    """TEM's three losses (MMAction2 sums them): pred [N, T, 3] = action, start, end."""
    names = ('action', 'start', 'end')
    losses = {f'loss_{name}': binary_logistic_regression_loss(
        pred[..., i], labels[f'label_{name}'], match_threshold) for i, name in enumerate(names)}
    losses['loss_action'] = losses['loss_action'] * loss_weight
    return losses


def pem_loss(pred: jax.Array, reference_temporal_iou: jax.Array,
             valid: jax.Array) -> jax.Array:
    """PEM's loss: mean smooth-L1 (beta 1) between predicted and reference IoU.

    MMAction2 1.2.0 draws high/medium/low IoU sample weights, but applies them to the
    already-averaged `F.smooth_l1_loss` (reduction 'mean'): sum(mean * w) / sum(w) = mean, so
    the weights cancel and the loss is the plain mean over all proposals. That is what this
    computes, over the `valid` (unpadded) proposals. (Where MMAction2 draws no weight at all,
    a batch without any IoU > high threshold, it gives 0/0 = NaN; this gives the mean.)
    """
    diff = jnp.abs(pred.astype(jnp.float32) - reference_temporal_iou)
    smooth_l1 = jnp.where(diff < 1.0, 0.5 * jnp.square(diff), diff - 0.5)
    valid = valid.astype(jnp.float32)
    return jnp.sum(smooth_l1 * valid) / jnp.maximum(valid.sum(), 1.0)


def check_loss_cfg(cfg: Mapping | None, expected: str) -> None:
    """Accepts MMAction2's `loss_cls` dict when it names the model's own loss (no arguments)."""
    if cfg is not None and dict(cfg) != {'type': expected}:
        raise ValueError(f'loss_cls {dict(cfg)!r} is not supported; this model computes '
                         f'dict(type={expected!r})')
