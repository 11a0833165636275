"""Training curves and time per iteration from runs' `scalars.jsonl` (MMAction2's analyze_logs).

    python -m action_jax.tools.analyze_logs plot_curve WORKDIR [WORKDIR ...] \
        --keys loss val/acc/top1 [--out curves.png] [--title T] [--legend A B ...]
    python -m action_jax.tools.analyze_logs cal_train_time WORKDIR [...] [--include-outliers]
        [--steps-per-epoch N]

A WORKDIR is a training run's directory (or its scalars.jsonl): one JSON object per logged step,
`{"step": N, "loss": ..., "val/acc/top1": ...}`. A key is looked up as given, then with the
`val/` prefix, so `--keys acc/top1` finds validation's `val/acc/top1` (MMAction2's `acc/top1`);
`top1_acc` is the training batches' accuracy.
The figure is PNG, SVG or PDF by the extension of `--out`, one panel per key.
cal_train_time needs each record's wall-clock `time` (seconds); epochs come from each record's
`epoch` (action_jax's training records carry it), or `--steps-per-epoch`, else the whole run
counts as one.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

import numpy as np


def scalars_file(workdir: str) -> str:
    path = workdir if workdir.endswith('.jsonl') else os.path.join(workdir, 'scalars.jsonl')
    if not os.path.isfile(path):
        raise SystemExit(f'{path}: no such file (is {workdir!r} a training work dir?)')
    return path


def load_records(workdir: str) -> list[dict]:
    """The run's records in file order, each with its int `step`."""
    path = scalars_file(workdir)
    records = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record['step'] = int(record['step'])
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f'{path}:{lineno}: not a {{"step": N, ...}} record ({e})') \
                    from None
            records.append(record)
    return records


def series(records: list[dict], key: str, where: str) -> tuple[str, list, list]:
    """(the key found, steps, values) of `key`, or of `val/key` as MMAction2 names them."""
    for candidate in (key, f'val/{key}'):
        points = [(r['step'], float(r[candidate])) for r in records if candidate in r]
        if points:
            return candidate, *map(list, zip(*points))
    keys = sorted({k for r in records for k in r} - {'step'})
    raise SystemExit(f'{where} has no key {key!r}; it has: {", ".join(keys)}')


def _run_name(workdir: str) -> str:
    path = os.path.normpath(workdir)
    return os.path.basename(os.path.dirname(path) if path.endswith('.jsonl') else path) or path


def plot_curve(args) -> str:
    from action_jax.visualization import figure, save_figure
    # Every key of every run first, so that a missing one stops before any drawing; each
    # run's file is read once for all its keys.
    curves = []
    for w in args.workdirs:
        records = load_records(w)
        curves.append([series(records, key, scalars_file(w)) for key in args.keys])
    legend = args.legend or [_run_name(w) for w in args.workdirs]
    if len(legend) != len(curves):
        raise SystemExit(f'--legend: {len(legend)} names for {len(curves)} work dirs')
    fig, axes = figure(len(args.keys), title=args.title)
    for j, ax in enumerate(axes):
        for run, name in zip(curves, legend):
            _, steps, values = run[j]
            # Validation is logged a few times per run: show its points.
            ax.plot(steps, values, marker='o' if len(steps) < 30 else None, label=name)
        found = curves[0][j][0]
        ax.set_xlabel('iter')
        ax.set_ylabel(found)
        ax.set_title(found)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, args.out)
    print(f'save curve to: {args.out}')
    return args.out


def epoch_times(records: list[dict], where: str, steps_per_epoch: int | None,
                include_outliers: bool) -> dict[int, list[float]]:
    """Seconds per iteration between consecutive logged training steps, by epoch; without
    `include_outliers` each epoch's first interval (which holds the previous epoch's
    validation and checkpoint) is left out, as MMAction2 leaves out each epoch's first iter."""
    # Training records carry their epoch (older logs: the throughput); validation and test
    # records are not iterations.
    train = [r for r in records if 'epoch' in r or 'clips_per_sec' in r]
    if not train or any('time' not in r for r in train):
        raise SystemExit(f"{where} has no 'time' field (wall-clock seconds of each logged "
                         'step): it was written by an action_jax that did not record it')
    steps = np.array([r['step'] for r in train])
    times = np.array([float(r['time']) for r in train])
    if all('epoch' in r for r in train):
        epochs = np.array([int(r['epoch']) for r in train])
    else:
        epochs = (steps - 1) // steps_per_epoch + 1 if steps_per_epoch else np.ones_like(steps)
    result: dict[int, list[float]] = defaultdict(list)
    for i in range(1, len(steps)):
        if include_outliers or epochs[i] == epochs[i - 1]:
            result[int(epochs[i])].append(float((times[i] - times[i - 1])
                                                / (steps[i] - steps[i - 1])))
    if not result:
        raise SystemExit(f'{where}: fewer than two timed training steps in any epoch')
    return dict(result)


def cal_train_time(args) -> list[dict]:
    reports = []
    for workdir in args.workdirs:
        times = epoch_times(load_records(workdir), scalars_file(workdir), args.steps_per_epoch,
                            args.include_outliers)
        epochs = sorted(times)
        means = np.array([np.mean(times[e]) for e in epochs])
        slow, fast = epochs[int(means.argmax())], epochs[int(means.argmin())]
        report = dict(slowest_epoch=slow, slowest=float(means.max()), fastest_epoch=fast,
                      fastest=float(means.min()), std=float(means.std()),
                      average=float(np.mean(np.concatenate([times[e] for e in epochs]))))
        print(f'{"-" * 5}Analyze train time of {workdir}{"-" * 5}')
        print(f'slowest epoch {slow}, average time is {report["slowest"]:.4f}')
        print(f'fastest epoch {fast}, average time is {report["fastest"]:.4f}')
        print(f'time std over epochs is {report["std"]:.4f}')
        print(f'average iter time: {report["average"]:.4f} s/iter\n')
        reports.append(report)
    return reports


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='task', required=True)
    plot = sub.add_parser('plot_curve', help='plot scalars against the iteration')
    plot.add_argument('workdirs', nargs='+', metavar='WORKDIR')
    plot.add_argument('--keys', nargs='+', default=['top1_acc'], help='scalars to plot')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--legend', nargs='+', help='one name per work dir (default: its name)')
    plot.add_argument('--out', default='curves.png', help='.png, .svg or .pdf')
    timing = sub.add_parser('cal_train_time', help='average time per training iteration')
    timing.add_argument('workdirs', nargs='+', metavar='WORKDIR')
    timing.add_argument('--include-outliers', action='store_true',
                        help="include each epoch's first interval in the average")
    timing.add_argument('--steps-per-epoch', type=int,
                        help='epoch length, for logs whose records carry no epoch')
    args = parser.parse_args(argv)
    return {'plot_curve': plot_curve, 'cal_train_time': cal_train_time}[args.task](args)


if __name__ == '__main__':
    main()
