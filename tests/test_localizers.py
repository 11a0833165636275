"""BMN / BSN (TEM, PEM): fidelity to MMAction2 1.2.0, losses, post-processing, learning."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from action_jax.convert.localizers import apply_localizer_state_dict, load_localizer_checkpoint
from action_jax.convert.mmaction2 import CheckpointError, load_mmaction2_checkpoint
from action_jax.evaluation.metrics import anet_ar_an
from action_jax.localization import postprocess as pp
from action_jax.localization import proposals as io
from action_jax.localization.data import (ActivityNetDataset, GenerateLocalizationLabels,
                                          LoadLocalizationFeature, PackLocalizationInputs)
from action_jax.localization.synthetic import make_synthetic_localization
from action_jax.models.localizers import BMN, LOCALIZERS, PEM, TEM, BMNOutput
from action_jax.models.localizers import losses
from action_jax.models.localizers.bmn import interp1d_sample_mask
from action_jax.models.localizers.layers import count_params
from tolerances import NETWORK_REL, assert_close_norm, assert_close_ulps

ANET_MODELS = {  # MMAction2's ActivityNet configs (configs/_base_/models/*.py)
    'BMN': (dict(temporal_dim=100, boundary_ratio=0.5, num_samples=32, num_samples_per_bin=3,
                 feat_dim=400, soft_nms_alpha=0.4, soft_nms_low_threshold=0.5,
                 soft_nms_high_threshold=0.9, post_process_top_k=100), 4_978_564),
    'TEM': (dict(temporal_dim=100, boundary_ratio=0.1, tem_feat_dim=400, tem_hidden_dim=512,
                 tem_match_threshold=0.5), 1_403_395),
    'PEM': (dict(pem_feat_dim=32, pem_hidden_dim=256, pem_u_ratio_m=1, pem_u_ratio_l=2,
                 pem_high_temporal_iou_threshold=0.6, pem_low_temporal_iou_threshold=0.2,
                 soft_nms_alpha=0.75, soft_nms_low_threshold=0.65, soft_nms_high_threshold=0.9,
                 post_process_top_k=100), 8_705),
}


def build_fixture_model(fixtures_dir, name: str):
    cfg = dict(json.loads((fixtures_dir / f'{name}_model_cfg.json').read_text())['model'])
    return LOCALIZERS[cfg.pop('type')](**cfg, rngs=nnx.Rngs(0))


def assert_close(ours: np.ndarray, ref: np.ndarray):
    assert_close_norm(ours, ref, NETWORK_REL)


# ---------------------------------------------------------------------------------------------
# Fidelity to the MMAction2 fixtures.

def test_bmn_matches_mmaction2(fixtures_dir):
    model = build_fixture_model(fixtures_dir, 'bmn_s')
    load_localizer_checkpoint(model, fixtures_dir / 'bmn_s.pth')
    io = np.load(fixtures_dir / 'bmn_s_io.npz')
    out = model(jnp.asarray(io['input'].transpose(0, 2, 1)))  # [N, C, T] -> [N, T, C]
    assert_close(np.asarray(out.confidence_map).transpose(0, 3, 1, 2), io['confidence_map_logit'])
    assert_close(np.asarray(out.start), io['start_logit'])
    assert_close(np.asarray(out.end), io['end_logit'])
    probs = model.predict({'inputs': jnp.asarray(io['input'].transpose(0, 2, 1))})
    assert_close(np.asarray(probs.start), io['start'])


def test_tem_matches_mmaction2(fixtures_dir):
    model = build_fixture_model(fixtures_dir, 'bsn_tem_s')
    load_localizer_checkpoint(model, fixtures_dir / 'bsn_tem_s.pth')
    io = np.load(fixtures_dir / 'bsn_tem_s_io.npz')
    logits = model(jnp.asarray(io['input'].transpose(0, 2, 1)))
    assert_close(np.asarray(logits).transpose(0, 2, 1), io['tem_logit'])


def test_pem_matches_mmaction2(fixtures_dir):
    model = build_fixture_model(fixtures_dir, 'bsn_pem_s')
    load_localizer_checkpoint(model, fixtures_dir / 'bsn_pem_s.pth')
    io = np.load(fixtures_dir / 'bsn_pem_s_io.npz')
    assert_close(np.asarray(model(jnp.asarray(io['input']))), io['pem_logit'])
    scores = model.predict({'bsp_feature': jnp.asarray(io['input'])})
    assert_close(np.asarray(scores), io['pem_output'][..., 0])


def test_sample_mask_equals_checkpoint(fixtures_dir):
    stored = load_mmaction2_checkpoint(fixtures_dir / 'bmn_s.pth')
    mask = interp1d_sample_mask(temporal_dim=16, boundary_ratio=0.5, num_samples=8,
                                num_samples_per_bin=3)
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, stored['sample_mask'])
    model = build_fixture_model(fixtures_dir, 'bmn_s')
    np.testing.assert_array_equal(np.asarray(model.bm_mask[...]), stored['bm_mask'])


def test_converter_is_strict(fixtures_dir):
    state = load_mmaction2_checkpoint(fixtures_dir / 'bmn_s.pth')
    model = build_fixture_model(fixtures_dir, 'bmn_s')
    with pytest.raises(CheckpointError, match=r'unexpected keys.*x_9d\.weight'):
        apply_localizer_state_dict(model, {**state, 'x_9d.weight': np.zeros(3)})
    with pytest.raises(CheckpointError, match=r'missing keys.*x_2d_p/6/bias'):
        apply_localizer_state_dict(model, {k: v for k, v in state.items() if k != 'x_2d_p.6.bias'})
    with pytest.raises(CheckpointError, match=r'x_1d_p\.0\.weight'):
        apply_localizer_state_dict(model, {**state, 'x_1d_p.0.weight': state['x_1d_b.0.weight']})
    cfg = json.loads((fixtures_dir / 'bmn_s_model_cfg.json').read_text())['model']
    cfg.pop('type')
    other = BMN(**dict(cfg, boundary_ratio=0.4), rngs=nnx.Rngs(0))
    with pytest.raises(CheckpointError, match='sample_mask'):
        apply_localizer_state_dict(other, state)


@pytest.mark.parametrize('name', sorted(ANET_MODELS))
def test_parameter_counts_at_activitynet_configs(name):
    cfg, expected = ANET_MODELS[name]
    model = nnx.eval_shape(lambda: LOCALIZERS[name](**cfg, rngs=nnx.Rngs(0)))
    assert count_params(model) == expected


def test_loss_cfg_is_checked():
    cfg = dict(ANET_MODELS['TEM'][0], tem_feat_dim=8, tem_hidden_dim=8)
    TEM(**cfg, loss_cls=dict(type='BinaryLogisticRegressionLoss'), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match='BMNLoss'):
        TEM(**cfg, loss_cls=dict(type='BMNLoss'), rngs=nnx.Rngs(0))


# ---------------------------------------------------------------------------------------------
# Losses against direct NumPy transcriptions of MMAction2's formulas.

# float32 means of <= 432 same-sign log terms in another order than NumPy's (<= 9 eps), and
# XLA's log against NumPy's (a few ulps): 84 eps leaves room; a wrong coefficient, mask or
# threshold moves a loss by percents.
LOSS_REL = 1e-5

def blr_reference(score, label, threshold=0.5, ratio_range=(1.05, 21), eps=1e-5):
    label, score = label.reshape(-1), score.reshape(-1)
    pmask = (label > threshold).astype(np.float32)
    num_positive = max(pmask.sum(), 1)
    ratio = min(max(len(label) / num_positive, ratio_range[0]), ratio_range[1])
    coef_0, coef_1 = 0.5 * ratio / (ratio - 1), 0.5 * ratio
    loss = coef_1 * pmask * np.log(score + eps) + coef_0 * (1.0 - pmask) * np.log(
        1.0 - score + eps)
    return -np.mean(loss)


def bmn_loss_reference(pred_bm, pred_start, pred_end, gt_iou_map, gt_start, gt_end, bm_mask,
                       draws):
    """MMAction2's BMNLoss with torch.rand_like replaced by the given draws; pred_bm NCHW."""
    gt_iou_map = gt_iou_map * bm_mask
    pred_reg, pred_cls = pred_bm[:, 0], pred_bm[:, 1]
    u_hmask = (gt_iou_map > 0.7).astype(np.float32)
    u_mmask = ((gt_iou_map <= 0.7) & (gt_iou_map > 0.3)).astype(np.float32)
    u_lmask = ((gt_iou_map <= 0.3) & (gt_iou_map > 0.)).astype(np.float32) * bm_mask
    num_h, num_m, num_l = u_hmask.sum(), u_mmask.sum(), u_lmask.sum()
    u_smmask = ((u_mmask * draws[0]) > (1. - num_h / num_m)).astype(np.float32)
    u_slmask = ((u_lmask * draws[1]) > (1. - num_h / num_l)).astype(np.float32)
    weights = u_hmask + u_smmask + u_slmask
    mse = np.mean((pred_reg * weights - gt_iou_map * weights) ** 2)
    reg = 0.5 * np.sum(mse * np.ones_like(weights)) / np.sum(weights)

    pmask = (gt_iou_map > 0.9).astype(np.float32)
    nmask = (gt_iou_map <= 0.9).astype(np.float32) * bm_mask
    num_positive = max(pmask.sum(), 1)
    num_entries = num_positive + nmask.sum()
    ratio = np.clip(num_entries / num_positive, 1.05, 21)
    coef_0, coef_1 = 0.5 * ratio / (ratio - 1), 0.5 * ratio
    cls = -np.sum(coef_1 * np.log(pred_cls + 1e-5) * pmask
                  + coef_0 * np.log(1.0 - pred_cls + 1e-5) * nmask) / num_entries

    tem = blr_reference(pred_start, gt_start) + blr_reference(pred_end, gt_end)
    return tem + 10 * reg + cls, tem, reg, cls


def test_binary_logistic_regression_loss_hand_case():
    # Half the labels positive: ratio 2, both coefficients 1, loss = -log(0.5 + eps).
    score = jnp.full((2, 4), 0.5)
    label = jnp.array([[0.9, 0.1, 0.7, 0.2], [0.6, 0.0, 0.3, 1.0]])
    # 0.5 + eps rounded (1 ulp of the log), XLA's log (<= 2 ulps), a mean of 8 equal terms
    # (<= 4 roundings): 8 ulps.
    assert_close_ulps(losses.binary_logistic_regression_loss(score, label),
                      -math.log(0.5 + 1e-5), 8)


def test_binary_logistic_regression_loss_matches_reference():
    rng = np.random.default_rng(0)
    for positives in (0.05, 0.3, 0.9):  # ratio clipped high, in range, clipped low
        score = rng.uniform(0.01, 0.99, (4, 20)).astype(np.float32)
        label = (rng.uniform(size=(4, 20)) < positives) * rng.uniform(0.5, 1, (4, 20))
        ours = losses.binary_logistic_regression_loss(score, label, 0.5)
        assert_close_norm(ours, blr_reference(score, label), LOSS_REL)


def test_bmn_loss_matches_reference():
    rng = np.random.default_rng(1)
    n, t = 3, 12
    gt_iou_map = rng.uniform(0, 1, (n, t, t)).astype(np.float32) ** 2
    gt_iou_map[rng.uniform(size=gt_iou_map.shape) < 0.3] = 0
    pred_bm = rng.uniform(0.05, 0.95, (n, 2, t, t)).astype(np.float32)
    pred_start, pred_end = rng.uniform(0.05, 0.95, (2, n, t)).astype(np.float32)
    gt_start, gt_end = rng.uniform(0, 1, (2, n, t)).astype(np.float32)
    bm_mask = (np.add.outer(np.arange(t), np.arange(t)) < t).astype(np.float32)
    key = jax.random.key(3)
    loss, parts = losses.bmn_loss(jnp.asarray(pred_bm.transpose(0, 2, 3, 1)), pred_start,
                                  pred_end, gt_iou_map, gt_start, gt_end, bm_mask, key)
    draws = np.asarray(jax.random.uniform(key, (2, n, t, t)))
    ref = bmn_loss_reference(pred_bm, pred_start, pred_end, gt_iou_map, gt_start, gt_end,
                             bm_mask, draws)
    ours = (loss, parts['tem_loss'], parts['pem_reg_loss'], parts['pem_cls_loss'])
    for got, want in zip(ours, ref):
        assert_close_norm(got, want, LOSS_REL)


def test_tem_and_pem_losses_match_reference():
    rng = np.random.default_rng(2)
    pred = rng.uniform(0.05, 0.95, (2, 10, 3)).astype(np.float32)
    labels = {f'label_{k}': rng.uniform(0, 1, (2, 10)).astype(np.float32)
              for k in ('action', 'start', 'end')}
    ours = losses.tem_loss(jnp.asarray(pred), labels, match_threshold=0.5)
    ref = [2 * blr_reference(pred[..., 0], labels['label_action']),
           blr_reference(pred[..., 1], labels['label_start']),
           blr_reference(pred[..., 2], labels['label_end'])]
    for key, want in zip(('loss_action', 'loss_start', 'loss_end'), ref):
        assert_close_norm(ours[key], want, LOSS_REL, err_msg=key)

    # PEM, as MMAction2 writes it: weights applied to the already-averaged smooth-L1.
    pem_pred = rng.uniform(0, 1, 40).astype(np.float32)
    ref_iou = rng.uniform(0, 1, 40).astype(np.float32)
    diff = np.abs(pem_pred - ref_iou)
    mean_l1 = np.mean(np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5))
    u_h = (ref_iou > 0.6).astype(np.float32)
    u_m = ((ref_iou <= 0.6) & (ref_iou > 0.2)).astype(np.float32)
    u_sm = (rng.uniform(size=40) * u_m > 1 - min(u_h.sum() / u_m.sum(), 1)).astype(np.float32)
    weights = u_h + u_sm
    expected = np.sum(mean_l1 * weights) / np.sum(weights)
    valid = np.ones(44, bool)
    valid[40:] = False  # padding is ignored
    ours = losses.pem_loss(jnp.pad(pem_pred, (0, 4), constant_values=0.9),
                           jnp.pad(ref_iou, (0, 4)), valid)
    assert_close_norm(ours, expected, LOSS_REL)


# ---------------------------------------------------------------------------------------------
# Post-processing.

def test_soft_nms_hand_case():
    proposals = np.array([[0.0, 0.45, 0.8],   # IoU 0.9 with the best: decayed
                          [0.6, 1.0, 0.7],    # disjoint from it: kept as is
                          [0.0, 0.5, 0.9]])
    out = pp.soft_nms(proposals, alpha=0.4, low_threshold=0.5, high_threshold=0.9, top_k=100)
    # The best (width 0.5) decays IoUs above 0.5 + 0.4 * 0.5 = 0.7 by exp(-IoU^2 / alpha).
    expected = [[0.0, 0.5, 0.9], [0.6, 1.0, 0.7], [0.0, 0.45, 0.8 * math.exp(-0.81 / 0.4)]]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    # MMAction2 stops after top_k + 1 picks; post_processing then keeps top_k.
    assert len(pp.soft_nms(proposals, 0.4, 0.5, 0.9, top_k=1)) == 2
    video = {'duration_frame': 100, 'duration_second': 10.0}  # covers 96 frames: 9.6 s
    result = pp.post_processing(np.array([[-0.1, 1.2, 0.3], [0.25, 0.5, 0.6]]), video, 0.4,
                                0.5, 0.9, top_k=1)
    assert result == [{'score': 0.6, 'segment': [pytest.approx(2.4), pytest.approx(4.8)]}]
    result = pp.post_processing(np.array([[-0.1, 1.2, 0.3]]), video, 0.4, 0.5, 0.9, top_k=5)
    assert result == [{'score': 0.3, 'segment': [0.0, pytest.approx(9.6)]}]


def bmn_candidates_reference(start_scores, end_scores, reg_confidence, cls_confidence):
    """MMAction2's BMN.predict loops, verbatim in substance."""
    tscale = len(start_scores)
    max_start, max_end = max(start_scores), max(end_scores)
    start_bins, end_bins = np.zeros(tscale), np.zeros(tscale)
    start_bins[0] = 1
    end_bins[-1] = 1
    for idx in range(1, tscale - 1):
        if start_scores[idx] > start_scores[idx + 1] and start_scores[idx] > start_scores[idx - 1]:
            start_bins[idx] = 1
        elif start_scores[idx] > (0.5 * max_start):
            start_bins[idx] = 1
        if end_scores[idx] > end_scores[idx + 1] and end_scores[idx] > end_scores[idx - 1]:
            end_bins[idx] = 1
        elif end_scores[idx] > (0.5 * max_end):
            end_bins[idx] = 1
    rows = []
    for idx in range(tscale):
        for jdx in range(tscale):
            start_index, end_index = jdx, jdx + idx + 1
            if end_index < tscale and start_bins[start_index] == 1 and end_bins[end_index] == 1:
                tmin_score, tmax_score = start_scores[start_index], end_scores[end_index]
                cls_score, reg_score = cls_confidence[idx, jdx], reg_confidence[idx, jdx]
                rows.append([start_index / tscale, end_index / tscale, tmin_score, tmax_score,
                             cls_score, reg_score,
                             tmin_score * tmax_score * cls_score * reg_score])
    return np.stack(rows)


def test_bmn_post_process_matches_reference():
    rng = np.random.default_rng(4)
    t = 20
    start, end = rng.uniform(0, 1, (2, t)).astype(np.float32)
    reg, cls = rng.uniform(0, 1, (2, t, t)).astype(np.float32)
    candidates = pp.bmn_candidates(start, end, reg, cls)
    reference = bmn_candidates_reference(start, end, reg, cls)
    assert candidates.dtype == reference.dtype == np.float64
    np.testing.assert_array_equal(candidates, reference)

    # Post-processing needs the configuration only: an abstract model will do.
    model = nnx.eval_shape(lambda: BMN(**dict(ANET_MODELS['BMN'][0], temporal_dim=t),
                                       rngs=nnx.Rngs(0)))
    video = {'duration_frame': 3000, 'duration_second': 100.0}
    proposals = model.post_process(BMNOutput(np.stack([reg, cls], -1), start, end), video)
    assert proposals == pp.post_processing(reference, video, 0.4, 0.5, 0.9, 100)
    assert len(proposals) == min(100, len(reference)) > 50
    scores = [p['score'] for p in proposals]
    assert scores == sorted(scores, reverse=True)


def test_pem_post_process_uses_unpadded_proposals():
    model = nnx.eval_shape(lambda: PEM(**ANET_MODELS['PEM'][0], rngs=nnx.Rngs(0)))
    sample = {'tmin': np.array([0.1, 0.5, 0.0], np.float32),
              'tmax': np.array([0.4, 0.9, 0.0], np.float32),
              'tmin_score': np.array([0.5, 0.8, 0.0], np.float32),
              'tmax_score': np.array([0.5, 0.5, 0.0], np.float32),
              'proposal_mask': np.array([True, True, False]),
              'duration_frame': 160, 'duration_second': 16.0}
    proposals = model.post_process(np.array([0.8, 0.5, 1.0], np.float32), sample)
    assert [p['score'] for p in proposals] == [pytest.approx(0.2), pytest.approx(0.2)]
    assert sorted(p['segment'][0] for p in proposals) == [pytest.approx(1.6), pytest.approx(8.0)]


def pgm_reference(tem_results, video_info, tscale, peak_threshold):
    """MMAction2's generate_candidate_proposals for one video, verbatim in substance."""
    tgap = 1. / tscale
    start_scores, end_scores = tem_results[:, 1], tem_results[:, 2]
    max_start, max_end = max(start_scores), max(end_scores)
    start_bins, end_bins = np.zeros(len(start_scores)), np.zeros(len(end_scores))
    start_bins[[0, -1]] = 1
    end_bins[[0, -1]] = 1
    for idx in range(1, tscale - 1):
        if start_scores[idx] > start_scores[idx + 1] and start_scores[idx] > start_scores[idx - 1]:
            start_bins[idx] = 1
        elif start_scores[idx] > (peak_threshold * max_start):
            start_bins[idx] = 1
        if end_scores[idx] > end_scores[idx + 1] and end_scores[idx] > end_scores[idx - 1]:
            end_bins[idx] = 1
        elif end_scores[idx] > (peak_threshold * max_end):
            end_bins[idx] = 1
    tmins, tmin_scores, tmaxs, tmax_scores = [], [], [], []
    for idx in range(tscale):
        if start_bins[idx] == 1:
            tmins.append(tgap / 2 + tgap * idx)
            tmin_scores.append(start_scores[idx])
        if end_bins[idx] == 1:
            tmaxs.append(tgap / 2 + tgap * idx)
            tmax_scores.append(end_scores[idx])
    props = []
    for tmax, tmax_score in zip(tmaxs, tmax_scores):
        for tmin, tmin_score in zip(tmins, tmin_scores):
            if tmin >= tmax:
                break
            props.append([tmin, tmax, tmin_score, tmax_score])
    props = np.stack(props)
    props = np.concatenate((props, (props[:, 2] * props[:, 3]).reshape(-1, 1)), axis=1)
    props = props[props[:, -1].argsort()[::-1]]
    corrected = float(video_info['feature_frame']) / video_info['duration_frame'] * video_info[
        'duration_second']
    gt_tmins = [a['segment'][0] / corrected for a in video_info['annotations']]
    gt_tmaxs = [a['segment'][1] / corrected for a in video_info['annotations']]
    ious = [max(pp.temporal_iou(p[0], p[1], gt_tmins, gt_tmaxs)) for p in props]
    ioas = [max(pp.temporal_iop(p[0], p[1], gt_tmins, gt_tmaxs)) for p in props]
    return np.concatenate((props, np.array(ious)[:, None], np.array(ioas)[:, None]), axis=1)


def bsp_reference(tem_results, pgm_proposals, top_k, bsp_boundary_ratio, num_sample_start,
                  num_sample_end, num_sample_action, num_sample_interp):
    """MMAction2's generate_bsp_feature for one video, verbatim in substance."""
    score_action = tem_results[:, 0]
    seg_tmins, seg_tmaxs = tem_results[:, 3], tem_results[:, 4]
    video_scale = len(tem_results)
    video_gap = seg_tmaxs[0] - seg_tmins[0]
    video_extend = int(video_scale / 4 + 10)
    zeros = np.zeros([video_extend])
    score_action = np.concatenate((zeros, score_action, zeros))
    begin_tp = [-video_gap / 2 - (video_extend - 1 - i) * video_gap for i in range(video_extend)]
    middle_tp = [video_gap / 2 + i * video_gap for i in range(video_scale)]
    end_tp = [video_gap / 2 + seg_tmaxs[-1] + i * video_gap for i in range(video_extend)]
    t_points = begin_tp + middle_tp + end_tp

    def sample(begin, step, num):
        t_new = [begin - step / 2 + step / num_sample_interp * i
                 for i in range(num * num_sample_interp + 1)]
        y = np.interp(t_new, t_points, score_action)
        return [np.mean(y[i * num_sample_interp:(i + 1) * num_sample_interp + 1])
                for i in range(num)]

    features = []
    for tmin, tmax in pgm_proposals[:top_k, :2]:
        tlen = tmax - tmin
        tmin_0, tmin_1 = tmin - tlen * bsp_boundary_ratio, tmin + tlen * bsp_boundary_ratio
        tmax_0, tmax_1 = tmax - tlen * bsp_boundary_ratio, tmax + tlen * bsp_boundary_ratio
        features.append(np.concatenate([
            sample(tmin, (tmax - tmin) / (num_sample_action - 1), num_sample_action),
            sample(tmin_0, (tmin_1 - tmin_0) / (num_sample_start - 1), num_sample_start),
            sample(tmax_0, (tmax_1 - tmax_0) / (num_sample_end - 1), num_sample_end)]))
    return np.array(features)


def test_pgm_matches_reference(tmp_path):
    rng = np.random.default_rng(5)
    t = 40
    model = nnx.eval_shape(lambda: TEM(**dict(ANET_MODELS['TEM'][0], temporal_dim=t),
                                       rngs=nnx.Rngs(0)))
    tem = model.post_process(rng.uniform(0, 1, (t, 3)).astype(np.float32))
    io.dump_tem_result(tmp_path, 'v_a', tem)
    tem = io.load_tem_result(tmp_path, 'v_a')  # float32, as PGM reads it
    video = {'duration_second': 50.0, 'duration_frame': 1500, 'feature_frame': 1488,
             'annotations': [{'segment': [3.0, 20.5], 'label': 'x'},
                             {'segment': [30.0, 44.0], 'label': 'y'}]}
    proposals = pp.generate_candidate_proposals(tem, video, temporal_scale=t, peak_threshold=0.5)
    np.testing.assert_array_equal(proposals, pgm_reference(tem, video, t, 0.5))
    io.dump_pgm_proposals(tmp_path, 'v_a', proposals)
    stored = io.load_pgm_proposals(tmp_path, 'v_a')
    cfg = dict(top_k=50, bsp_boundary_ratio=0.2, num_sample_start=8, num_sample_end=8,
               num_sample_action=16, num_sample_interp=3)
    feature = pp.generate_bsp_feature(tem, stored, **cfg)
    assert feature.shape == (min(50, len(stored)), 32)
    np.testing.assert_array_equal(feature, bsp_reference(tem, stored, **cfg))


def test_proposals_json_round_trip(tmp_path):
    proposals = {'v_abc': [{'segment': [1.5, 7.25], 'score': 0.875},
                           {'segment': [0.0, 3.0], 'score': np.float32(0.5)}],
                 'v_xyz': [{'segment': [np.float64(2.0), 4.0], 'score': 0.25}]}
    path = tmp_path / 'out' / 'results.json'
    io.dump_proposals_json(proposals, path)
    document = json.loads(path.read_text())
    assert document['version'] == 'VERSION 1.3' and document['external_data'] == {}
    loaded = io.load_proposals_json(path)
    assert loaded == {'abc': [{'segment': [1.5, 7.25], 'score': 0.875},
                              {'segment': [0.0, 3.0], 'score': 0.5}],
                      'xyz': [{'segment': [2.0, 4.0], 'score': 0.25}]}


# ---------------------------------------------------------------------------------------------
# BMN learns the synthetic set.

def test_bmn_learns_synthetic_proposals(tmp_path):
    t, c = 32, 16
    info = make_synthetic_localization(tmp_path, num_videos=64, temporal_dim=t, feat_dim=c)
    pipeline = [LoadLocalizationFeature(), GenerateLocalizationLabels(),
                PackLocalizationInputs(keys=('gt_bbox',))]

    def load(split):
        dataset = ActivityNetDataset(info['ann_files'][split], dict(video=info['feature_dir']))
        samples = []
        for i in range(len(dataset)):
            results = dataset[i]
            for transform in pipeline:
                results = transform(results)
            samples.append(results)
        return dataset, {k: np.stack([s[k] for s in samples]) for k in samples[0]}

    (_, train), (val_set, val) = load('train'), load('val')
    model = BMN(temporal_dim=t, boundary_ratio=0.5, num_samples=8, num_samples_per_bin=3,
                feat_dim=c, soft_nms_alpha=0.4, soft_nms_low_threshold=0.5,
                soft_nms_high_threshold=0.9, post_process_top_k=100, hidden_dim_1d=32,
                hidden_dim_2d=16, hidden_dim_3d=32, rngs=nnx.Rngs(0))
    train.update(model.generate_labels(train['gt_bbox'], train['num_gt']))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_fn(p):
            return nnx.merge(graphdef, p, rest).loss(batch, key)
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def predict(params, x):
        return nnx.merge(graphdef, params, rest).predict({'inputs': x})

    def evaluate(params):
        pred = jax.device_get(predict(params, val['inputs']))
        proposals = {info['video_name']: model.post_process(jax.tree.map(lambda a: a[i], pred),
                                                             info)
                     for i, info in enumerate(val_set.data_list)}
        return anet_ar_an(val_set.annotations(), proposals)

    before = evaluate(params)
    order = np.random.default_rng(0)
    key = jax.random.key(0)
    keys = ('inputs', 'gt_iou_map', 'gt_start', 'gt_end')
    losses_seen = []
    for _ in range(200):
        idx = order.choice(len(train['inputs']), 8, replace=False)
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, {k: train[k][idx] for k in keys}, sub)
        losses_seen.append(float(loss))
    after = evaluate(params)
    print(f'BMN on the synthetic set, 200 steps: loss {losses_seen[0]:.3f} -> '
          f'{np.mean(losses_seen[-20:]):.3f}; before {before}; after {after}')
    assert np.mean(losses_seen[-20:]) < 0.6 * losses_seen[0]
    assert after['auc'] > before['auc'] + 15
    assert after['AR@100'] > before['AR@100'] + 0.1
    assert after['AR@5'] > before['AR@5'] + 0.3
