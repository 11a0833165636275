"""Confusion matrix picture and per-class accuracy of a test result file (MMAction2's
confusion_matrix on dumped predictions).

    python -m action_jax.tools.confusion_matrix results.pkl --label-map labels.txt \
        --out cm.png [--normalize] [--csv per_class.csv] [--target-classes 0 3 5]

`results.pkl` (or .json) is what `--mode test --config.out=FILE` writes. Rows are the true
classes, columns the predicted (arg-max) ones; `--normalize` divides each row by its videos.
"""
from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from action_jax.tools.report_accuracy import load_results


def confusion_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[K, K] counts: cm[true, predicted]."""
    k = scores.shape[1]
    if labels.min() < 0 or labels.max() >= k:
        raise SystemExit(f'gt_label {labels.max() if labels.max() >= k else labels.min()} is '
                         f'outside the {k} scored classes')
    return np.bincount(labels * k + scores.argmax(axis=1), minlength=k * k).reshape(k, k)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN where the class has no video)."""
    total = cm.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(total > 0, np.diag(cm) / total, np.nan)


def class_names(label_map: str | None, k: int) -> list[str]:
    if label_map is None:
        return [str(i) for i in range(k)]
    from action_jax.label_map import read_label_map
    if not os.path.isfile(label_map):
        raise SystemExit(f'{label_map}: no such label map file')
    names = read_label_map(label_map)
    if len(names) != k:  # more names would label the rows with another data set's classes
        raise SystemExit(f'{label_map}: {len(names)} class names for {k} scored classes')
    return names


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='test results (.pkl or .json)')
    parser.add_argument('--label-map', help='class names, one a line (default: indices)')
    parser.add_argument('--out', help='the picture (.png, .svg or .pdf)')
    parser.add_argument('--normalize', action='store_true', help='rows sum to 1')
    parser.add_argument('--csv', help='per-class accuracy to this csv file')
    parser.add_argument('--target-classes', type=int, nargs='+',
                        help='draw only these classes (indices)')
    parser.add_argument('--title', help='figure title')
    args = parser.parse_args(argv)
    scores, labels = load_results(args.results)
    cm = confusion_matrix(scores, labels)
    names = class_names(args.label_map, cm.shape[0])
    accuracy = per_class_accuracy(cm)
    rows = [dict(index=i, name=names[i], videos=int(cm[i].sum()), correct=int(cm[i, i]),
                 accuracy=float(accuracy[i])) for i in range(len(names))]
    width = max(len(n) for n in names)
    print(f'{"class":<{width}}  videos  correct  accuracy')
    for r in rows:
        acc = '-' if np.isnan(r['accuracy']) else f'{r["accuracy"]:.4f}'
        print(f'{r["name"]:<{width}}  {r["videos"]:>6}  {r["correct"]:>7}  {acc:>8}')
    print(f'mean class accuracy (classes with videos): {np.nanmean(accuracy):.4f}')
    if args.csv:
        with open(args.csv, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f'per-class accuracy written to {args.csv}')
    if args.out:
        from action_jax.visualization import plot_confusion_matrix, save_figure
        index = args.target_classes or list(range(len(names)))
        if any(not 0 <= i < len(names) for i in index):
            raise SystemExit(f'--target-classes: indices run from 0 to {len(names) - 1}')
        shown = cm[np.ix_(index, index)].astype(np.float64)
        if args.normalize:
            shown = shown / np.maximum(cm[index].sum(axis=1, keepdims=True), 1)
        title = args.title or (f'{os.path.basename(args.results)}: {len(labels)} videos'
                               + (', rows normalised' if args.normalize else ''))
        save_figure(plot_confusion_matrix(shown, [names[i] for i in index], title,
                                          args.normalize), args.out)
        print(f'The confusion matrix is saved at {args.out}.')
    return dict(confusion_matrix=cm, per_class_accuracy=accuracy)


if __name__ == '__main__':
    main()
