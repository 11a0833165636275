"""Write MMAction2 train/val list files and the label map for a folder of videos or frames.

    python -m action_jax.tools.build_file_list SRC --out-dir DIR [--format videos|rawframes]
        [--val-fraction 0.2] [--seed 0] [--name NAME]
    python -m action_jax.tools.build_file_list SRC --out-dir DIR --annotations kinetics.csv ...

From a tree ``SRC/<class name>/<video or frame folder>`` (UCF101's layout): classes are the
folder names sorted, and each class is split on its own (stratified; seeded, the same seed
gives the same split). With Kinetics annotation CSVs (``label,youtube_id,time_start,time_end,
split``, a header line) the split column decides and each row names
``SRC/<label, spaces as _>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (or that frame folder),
MMAction2's naming; listed files that are missing are reported and left out.

Writes ``DIR/<name>_{train,val}_list_<format>.txt`` (``class/vid.mp4 label`` or ``class/vid
total_frames label``) and ``DIR/label_map.txt`` (one class name per line, label order).
"""
from __future__ import annotations

import argparse
import csv
import os
from typing import Sequence

import numpy as np

from action_jax.tools import _common
from action_jax.tools.build_rawframes import count_frames

SPLITS = ('train', 'val')
KINETICS_COLUMNS = ('label', 'youtube_id', 'time_start', 'time_end', 'split')
# Kinetics' split names; its test split has no labels and gets no list here.
KINETICS_SPLITS = {'train': 'train', 'val': 'val', 'validate': 'val'}


def _entry(src: str, rel: str, fmt: str) -> str | None:
    """A list line's path (and frame count) for ``rel``, or None when it is missing/empty."""
    path = os.path.join(src, rel)
    if fmt == 'videos':
        return rel if os.path.isfile(path) else None
    if not os.path.isdir(path):
        return None
    total = count_frames(path)
    return f'{rel} {total}' if total else None


def scan_tree(src: str, fmt: str) -> tuple[list[str], dict[str, list[str]]]:
    """Class names (sorted) and, per class, its entries (sorted) from SRC/<class>/<item>."""
    if not os.path.isdir(src):
        raise _common.UserError(f'not a directory: {src}')
    classes = sorted(d for d in os.listdir(src)
                     if not d.startswith('.') and os.path.isdir(os.path.join(src, d)))
    if not classes:
        raise _common.UserError(f'no class folders in {src} (expected SRC/<class>/<item>)')
    items = {}
    for name in classes:
        class_dir = os.path.join(src, name)
        if fmt == 'videos':
            rels = [os.path.join(name, f) for f in sorted(os.listdir(class_dir))
                    if not f.startswith('.') and f.lower().endswith(_common.VIDEO_EXTENSIONS)]
        else:
            rels = [os.path.join(name, d) for d in sorted(os.listdir(class_dir))
                    if not d.startswith('.') and os.path.isdir(os.path.join(class_dir, d))]
        items[name] = [e for e in (_entry(src, rel, fmt) for rel in rels) if e is not None]
        if not items[name]:
            print(f'warning: class folder {class_dir} holds no {fmt}')
    return classes, items


def split_per_class(items: dict[str, list[str]], val_fraction: float,
                    seed: int) -> dict[str, list[tuple[str, int]]]:
    """{'train', 'val'}: (entry, label) pairs; each class's entries split on their own.

    A class's validation share is ``round(n * val_fraction)``, but at least one video stays
    in training when the class has two or more.
    """
    lists: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for label, name in enumerate(sorted(items)):
        entries = items[name]
        num_val = round(len(entries) * val_fraction)
        if len(entries) > 1:
            num_val = min(num_val, len(entries) - 1)
        order = np.random.default_rng([seed, label]).permutation(len(entries))
        is_val = np.zeros(len(entries), bool)
        is_val[order[:num_val]] = True
        for entry, val in zip(entries, is_val):
            lists['val' if val else 'train'].append((entry, label))
    return lists


def _kinetics_class(label: str) -> str:
    """MMAction2's folder name of a Kinetics class: quotes dropped, spaces as underscores."""
    return label.replace('"', '').replace(' ', '_')


def read_kinetics(files: Sequence[str]) -> list[dict[str, str]]:
    """The rows of Kinetics annotation CSVs (the columns checked, named in errors)."""
    rows = []
    for file in files:
        try:
            with open(file, newline='') as f:
                reader = csv.DictReader(f)
                missing = set(KINETICS_COLUMNS) - set(reader.fieldnames or ())
                if missing:
                    raise _common.UserError(
                        f'{file}, line 1: the header lacks {sorted(missing)} (expected '
                        f'{",".join(KINETICS_COLUMNS)})')
                for row in reader:
                    if None in row.values() or None in row:
                        raise _common.UserError(
                            f'{file}, line {reader.line_num}: expected '
                            f'{len(reader.fieldnames)} fields')
                    row['_where'] = f'{file}, line {reader.line_num}'
                    rows.append(row)
        except OSError as exc:
            raise _common.UserError(f'cannot read {file}: {exc.strerror}') from None
    return rows


def kinetics_lists(src: str, rows: list[dict[str, str]], fmt: str
                   ) -> tuple[list[str], dict[str, list[tuple[str, int]]], list[str]]:
    """Class names (label order), the split lists, and the listed items that are missing."""
    labelled = [r for r in rows if r['split'] in KINETICS_SPLITS]
    # MMAction2 sorts the folder names (which may order differently from the display names).
    names = {_kinetics_class(r['label']): r['label'].replace('"', '') for r in labelled}
    folders = sorted(names)
    label_of = {folder: i for i, folder in enumerate(folders)}
    lists: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    missing: list[str] = []
    absent_classes: set[str] = set()
    for row in labelled:
        folder = _kinetics_class(row['label'])
        try:
            video = (f'{row["youtube_id"]}_{int(float(row["time_start"])):06d}_'
                     f'{int(float(row["time_end"])):06d}')
        except ValueError:
            raise _common.UserError(f'{row["_where"]}: time_start/time_end are not numbers: '
                                    f'{row["time_start"]!r}, {row["time_end"]!r}') from None
        rel = os.path.join(folder, video + ('.mp4' if fmt == 'videos' else ''))
        if not os.path.isdir(os.path.join(src, folder)):
            absent_classes.add(folder)
        entry = _entry(src, rel, fmt)
        if entry is None:
            missing.append(rel)
        else:
            lists[KINETICS_SPLITS[row['split']]].append((entry, label_of[folder]))
    for folder in sorted(absent_classes):
        print(f'warning: class folder missing: {os.path.join(src, folder)}')
    return [names[f] for f in folders], lists, missing


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='SRC/<class>/<video or frame folder>')
    parser.add_argument('--out-dir', required=True, help='where the lists and label map go')
    parser.add_argument('--format', choices=('videos', 'rawframes'), default='videos')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of each class for validation (folder trees only)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the train/val split')
    parser.add_argument('--annotations', nargs='+', metavar='CSV',
                        help='Kinetics-style CSVs (label,youtube_id,time_start,time_end,split)')
    parser.add_argument('--name', help='list file prefix (default: the name of SRC)')
    args = parser.parse_args(argv)
    if not 0 <= args.val_fraction < 1:
        raise _common.UserError(f'--val-fraction must be in [0, 1), got {args.val_fraction}')
    src = os.path.normpath(args.src)
    if not os.path.isdir(src):
        raise _common.UserError(f'not a directory: {src}')
    if args.annotations:
        classes, lists, missing = kinetics_lists(src, read_kinetics(args.annotations),
                                                 args.format)
    else:
        classes, items = scan_tree(src, args.format)
        lists, missing = split_per_class(items, args.val_fraction, args.seed), []
    for rel in missing:
        print(f'missing: {os.path.join(src, rel)}')
    name = args.name or os.path.basename(os.path.abspath(src))
    written = {'label_map': os.path.join(args.out_dir, 'label_map.txt')}
    _common.write_text(written['label_map'], classes)
    for split in SPLITS:
        written[split] = os.path.join(args.out_dir, f'{name}_{split}_list_{args.format}.txt')
        _common.write_text(written[split], (f'{entry} {label}' for entry, label in lists[split]))
    print(f'{len(classes)} classes; {len(lists["train"])} train, {len(lists["val"])} val'
          f'{f", {len(missing)} listed but missing" if missing else ""}; '
          f'wrote {written["train"]}, {written["val"]}, {written["label_map"]}')
    return written


if __name__ == '__main__':
    _common.run(main)
