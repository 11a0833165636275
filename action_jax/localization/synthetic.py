"""A small synthetic ActivityNet-style localization set: feature csvs with planted actions.

Each video is a [temporal_dim, feat_dim] feature sequence: Gaussian noise (std `noise`) around
a per-video background vector, plus, inside every action segment, the pattern vector of the
action's class (entries of std `signal`). Segments (1 to `max_segments` per video, not
overlapping, at least one step apart and from the ends) have random positions and lengths
(between `min_length` and `max_length` of the video) on a continuous time axis; a step that a
boundary cuts gets the pattern in proportion to its overlap, as mean-pooled real features
would. Deterministic by seed.

Layout written by `make_synthetic_localization` (MMAction2's ActivityNet layout):

    DIR/csv_mean_<T>/<video>.csv          header 'f0,...', T rows of feat_dim values
    DIR/anet_anno_{train,val,full}.json   {video: {duration_second, duration_frame,
                                          feature_frame, fps, rfps, annotations: [{segment,
                                          label}]}}; full = train + val
    DIR/label_map.txt                     class names, one per line (written last)
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

CLASS_NAMES = ('jumping', 'spinning', 'waving', 'throwing')
FPS = 30.0
FEATURE_INTERVAL = 16  # frames per feature step at extraction time (ActivityNet's)


def _segments(rng: np.random.Generator, max_segments: int, min_length: float,
              max_length: float, min_gap: float) -> np.ndarray:
    """[n, 2] sorted, non-overlapping segments in [0, 1], at least `min_gap` apart."""
    n = int(rng.integers(1, max_segments + 1))
    lengths = rng.uniform(min_length, max_length, n)
    while lengths.sum() + (n + 1) * min_gap > 1:  # shrink until they fit
        lengths *= 0.9
    free = 1 - lengths.sum() - (n + 1) * min_gap
    gaps = rng.dirichlet(np.ones(n + 1)) * free + min_gap
    starts = gaps[:-1].cumsum() + np.concatenate([[0], lengths[:-1].cumsum()])
    return np.stack([starts, starts + lengths], axis=1)


def synthetic_video(rng: np.random.Generator, patterns: np.ndarray, temporal_dim: int,
                    noise: float, max_segments: int, min_length: float,
                    max_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [T, C] float32, segments [n, 2] in [0, 1], class indices [n])."""
    t = temporal_dim
    segments = _segments(rng, max_segments, min_length, max_length, min_gap=1 / t)
    labels = rng.integers(len(patterns), size=len(segments))
    steps = np.arange(t)
    overlap = (np.minimum((steps + 1) / t, segments[:, 1:2])
               - np.maximum(steps / t, segments[:, :1])).clip(0) * t  # [n, T] step coverage
    background = rng.normal(0, 0.5, patterns.shape[1])
    features = (background + rng.normal(0, noise, (t, patterns.shape[1]))
                + overlap.T @ patterns[labels])
    return features.astype(np.float32), segments, labels


def _annotation(rng: np.random.Generator, segments: np.ndarray,
                labels: np.ndarray) -> dict[str, Any]:
    """An ActivityNet annotation entry whose feature-covered duration maps [0, 1] to seconds."""
    duration_second = round(float(rng.uniform(20, 180)), 2)
    duration_frame = int(round(duration_second * FPS))
    feature_frame = duration_frame // FEATURE_INTERVAL * FEATURE_INTERVAL
    covered_second = feature_frame / duration_frame * duration_second
    return {
        'duration_second': duration_second,
        'duration_frame': duration_frame,
        'annotations': [{'segment': [float(a * covered_second), float(b * covered_second)],
                         'label': CLASS_NAMES[c]} for (a, b), c in zip(segments, labels)],
        'feature_frame': feature_frame,
        'fps': FPS,
        'rfps': FPS,
    }


def make_synthetic_localization(out_dir: str | os.PathLike, num_videos: int = 64,
                                temporal_dim: int = 32, feat_dim: int = 16, seed: int = 0,
                                val_fraction: float = 0.25, signal: float = 1.0,
                                noise: float = 0.5,
                                max_segments: int = 3, min_length: float = 0.08,
                                max_length: float = 0.6) -> dict[str, Any]:
    """Writes the data set (layout in the module docstring); returns its paths and sizes."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, signal, (len(CLASS_NAMES), feat_dim))
    feature_dir = os.path.join(out_dir, f'csv_mean_{temporal_dim}')
    os.makedirs(feature_dir, exist_ok=True)
    header = ','.join(f'f{i}' for i in range(feat_dim))
    num_val = int(round(num_videos * val_fraction))
    splits: dict[str, dict[str, Any]] = {'train': {}, 'val': {}}
    for index in range(num_videos):
        name = f'v_synthetic{index:05d}'
        features, segments, labels = synthetic_video(rng, patterns, temporal_dim, noise,
                                                     max_segments, min_length, max_length)
        np.savetxt(os.path.join(feature_dir, name + '.csv'), features, fmt='%.4f',
                   delimiter=',', header=header, comments='')
        split = 'val' if index >= num_videos - num_val else 'train'
        splits[split][name] = _annotation(rng, segments, labels)
    ann_files = {}
    for split, database in (*splits.items(), ('full', {**splits['train'], **splits['val']})):
        ann_files[split] = os.path.join(out_dir, f'anet_anno_{split}.json')
        with open(ann_files[split], 'w') as f:
            json.dump(database, f, indent=1)
    with open(os.path.join(out_dir, 'label_map.txt'), 'w') as f:
        f.write('\n'.join(CLASS_NAMES) + '\n')
    return {'feature_dir': feature_dir, 'ann_files': ann_files,
            'num_videos': {split: len(db) for split, db in splits.items()},
            'class_names': CLASS_NAMES}
