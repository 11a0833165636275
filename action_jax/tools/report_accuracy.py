"""Fuse the scores of several test result files and report their accuracy (MMAction2's
report_accuracy): RGB + flow, or several models.

    python -m action_jax.tools.report_accuracy --scores rgb.pkl flow.pkl \
        [--coefficients 1 1.5] [--apply-softmax]

Each file is what `--mode test --config.out=FILE` writes (.pkl or .json): one
{'pred_score': [K scores], 'gt_label': int} per video, the videos in the same order in every
file. The fused score of a video is sum_i coefficient_i * score_i (after a softmax over the
classes with --apply-softmax).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Sequence

import numpy as np

from action_jax.evaluation.metrics import mean_class_accuracy, top_k_accuracy


def load_results(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores [N, K], labels [N]) of a results .pkl/.json file."""
    if not os.path.isfile(path):
        raise SystemExit(f'{path}: no such file')
    try:
        if path.endswith('.json'):
            with open(path) as f:
                records = json.load(f)
        else:
            with open(path, 'rb') as f:
                records = pickle.load(f)
    except (json.JSONDecodeError, pickle.UnpicklingError, EOFError) as e:
        raise SystemExit(f'{path}: not a results file ({e})') from None
    if not isinstance(records, list) or not records:
        raise SystemExit(f'{path}: expected a non-empty list of per-video results')
    scores, labels = [], []
    for i, record in enumerate(records):
        missing = {'pred_score', 'gt_label'} - set(record if isinstance(record, dict) else ())
        if missing:
            raise SystemExit(f'{path}: video {i} has no {", ".join(sorted(missing))}')
        scores.append(np.asarray(record['pred_score'], dtype=np.float64).reshape(-1))
        labels.append(int(np.asarray(record['gt_label']).reshape(-1)[0]))
    if len({s.size for s in scores}) != 1:
        raise SystemExit(f'{path}: the videos have different numbers of class scores')
    return np.stack(scores), np.asarray(labels)


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def fuse(paths: Sequence[str], coefficients: Sequence[float],
         apply_softmax: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(weighted sum of the files' scores, labels)."""
    if len(paths) != len(coefficients):
        raise SystemExit(f'{len(paths)} score files but {len(coefficients)} coefficients')
    loaded = [load_results(p) for p in paths]
    labels = loaded[0][1]
    for path, (scores, other) in zip(paths[1:], loaded[1:]):
        if scores.shape != loaded[0][0].shape or not np.array_equal(other, labels):
            raise SystemExit(f'{path} and {paths[0]}: different videos (sizes {scores.shape} '
                             f'and {loaded[0][0].shape}, or labels)')
    fused = sum(c * (softmax(s) if apply_softmax else s)
                for c, (s, _) in zip(coefficients, loaded))
    return fused, labels


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--scores', '--preds', nargs='+', required=True, dest='scores',
                        help='result files (.pkl or .json) of the same test set')
    parser.add_argument('--coefficients', nargs='+', type=float,
                        help='one weight per file (default: 1 each)')
    parser.add_argument('--apply-softmax', action='store_true',
                        help='softmax each score file before weighting')
    args = parser.parse_args(argv)
    scores, labels = fuse(args.scores, args.coefficients or [1.0] * len(args.scores),
                          args.apply_softmax)
    top1, top5 = top_k_accuracy(scores, labels, (1, 5))
    metrics = dict(mean_class_accuracy=mean_class_accuracy(scores, labels), top1=top1,
                   top5=top5)
    print(f'Mean Class Accuracy: {metrics["mean_class_accuracy"]:.04f}')
    print(f'Top 1 Accuracy: {top1:.04f}')
    print(f'Top 5 Accuracy: {top5:.04f}')
    return metrics


if __name__ == '__main__':
    main()
