"""How the host side of training and evaluation differs per kind of model: recognition, or
temporal action localization (BMN, BSN's TEM and PEM). The loop (train/loop.py) and the
jitted steps are the same for both, and the models own their loss and predictions
(`model.loss(batch, rng)`, `model.predict(batch)`); a task supplies the rest:

  prepare_batch(batch, train)   host: a loader batch -> the arrays sent to the devices
  evaluate(dataset, predictions, rows)
                                host: a split's predictions, and the other (non-input) batch
                                arrays, in data-set order -> (metrics, per-video results)
  write_results(results, path)  the per-video results to `config.out`
  input_keys                    batch entries the model reads (not brought back to the host)
  best_metric                   the metric `save_best='auto'` keeps the best checkpoint by
"""
import json
import pickle
from typing import Any

import jax
import numpy as np
from absl import logging

from action_jax.evaluation.metrics import anet_ar_an
from action_jax.evaluation.metrics import evaluate as accuracy_metrics
from action_jax.localization.proposals import dump_proposals_json, dump_tem_result
from action_jax.models.localizers import LOCALIZERS

Batch = dict[str, np.ndarray]


def build_task(model, config) -> 'Recognition | Localization':
    """The task of `model` (built from `config.model`)."""
    if isinstance(model, tuple(LOCALIZERS.values())):
        return Localization(model, config)
    return Recognition(config)


class Recognition:
    """Recognizers: class scores of clips, scored by accuracy (MMAction2's AccMetric)."""

    input_keys = ('imgs',)
    best_metric = 'acc/top1'

    def __init__(self, config):
        self.metrics = tuple(config.eval_metrics)
        self.topk = tuple(config.metric_options.topk)

    def prepare_batch(self, batch: Batch, train: bool) -> Batch:
        return batch

    def evaluate(self, dataset, predictions: np.ndarray,
                 rows: Batch) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
        """Accuracy metrics; results (scores, labels)."""
        scores, labels = predictions, rows['label']
        # average_clips=None keeps per-view scores; the metrics use their mean.
        flat = scores.mean(axis=1) if scores.ndim == 3 else scores
        metrics = accuracy_metrics(flat, labels, metrics=self.metrics, topk=self.topk)
        return metrics, (scores, labels)

    def write_results(self, results: tuple[np.ndarray, np.ndarray], path: str) -> None:
        """Per-video {'pred_score', 'gt_label'} to a .pkl or .json file."""
        scores, labels = results
        if path.endswith('.json'):
            with open(path, 'w') as f:
                json.dump([{'pred_score': s.tolist(), 'gt_label': np.asarray(l).tolist()}
                           for s, l in zip(scores, labels)], f)
        elif path.endswith('.pkl'):
            with open(path, 'wb') as f:
                pickle.dump([{'pred_score': s, 'gt_label': l} for s, l in zip(scores, labels)],
                            f)
        else:
            raise ValueError(f'--config.out={path!r}: use a .pkl or .json file name.')
        logging.info('Per-video results written to %s', path)


class Localization:
    """BMN, TEM and PEM on ActivityNet-style feature data (MMAction2's ANetMetric).

    `eval_metrics=('AR@AN',)` (BMN, PEM): per-video proposals, scored by AR@AN (auc, AR@1,
    AR@5, AR@10, AR@100) and written as an ActivityNet results json. `('TEM',)`: per-video TEM
    results, no metric, written as one csv per video into the `out` directory (BSN's PGM reads
    them).
    """

    input_keys = ('inputs', 'bsp_feature')
    METRIC_TYPES = ('AR@AN', 'TEM')

    def __init__(self, model, config):
        if len(config.eval_metrics) != 1 or config.eval_metrics[0] not in self.METRIC_TYPES:
            raise ValueError(f'eval_metrics={tuple(config.eval_metrics)!r}: a localizer takes '
                             f'one of {self.METRIC_TYPES}')
        self.metric_type = config.eval_metrics[0]
        self.best_metric = 'auc' if self.metric_type == 'AR@AN' else None
        self.model = model  # host side: its generate_labels and post_process

    def prepare_batch(self, batch: Batch, train: bool) -> Batch:
        """The padded ground truth (gt_bbox, num_gt) stays on the host; for training, BMN and
        TEM turn it into their fixed-shape targets."""
        gt_bbox, num_gt = batch.pop('gt_bbox', None), batch.pop('num_gt', None)
        if train and gt_bbox is not None and hasattr(self.model, 'generate_labels'):
            batch.update(self.model.generate_labels(gt_bbox, num_gt))
        return batch

    def evaluate(self, dataset, predictions, rows: Batch) -> tuple[dict[str, float],
                                                                     dict[str, Any]]:
        """Post-processes each video (its annotation entry and batch row as the sample);
        results {video_name: proposals or TEM result}."""
        results = {}
        for i, index in enumerate(rows['index']):
            info = dataset.data_list[index]
            sample = {**info, **{k: v[i] for k, v in rows.items()}}
            results[info['video_name']] = self.model.post_process(
                jax.tree.map(lambda a: a[i], predictions), sample)
        if self.metric_type == 'TEM':
            return {}, results
        # Videos left out (unreadable features, see the warning) are left out of the scores.
        annotations = {k: v for k, v in dataset.annotations().items() if k in results}
        return anet_ar_an(annotations, results), results

    def write_results(self, results: dict[str, Any], path: str) -> None:
        if self.metric_type == 'TEM':
            for video_name, result in results.items():
                dump_tem_result(path, video_name, result)
            logging.info('TEM results of %d videos written to %s/', len(results), path)
        else:
            dump_proposals_json(results, path)
            logging.info('Proposals of %d videos written to %s', len(results), path)
