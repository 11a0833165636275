"""Long synthetic videos with annotated actions: the "own videos" of the README's
localization walk-through (video -> features -> BMN -> proposals).

Each video shows the textured background of action_jax/data/synthetic.py with per-frame
noise; during 1 to `max_segments` segments (positions drawn as in localization/synthetic.py)
one of its shapes slides across (class = shape x direction). Deterministic by seed.

    python -m action_jax.localization.synthetic_videos data/own_videos [--num-videos 24]

Layout (what a user with their own videos would have after labelling them):

    DIR/videos/v_own<i>.mp4             H.264
    DIR/{train,val}_list.txt            'v_own<i>.mp4' per line
    DIR/anet_anno_{train,val}.json      {v_own<i>: {annotations: [{segment: [s0, s1],
                                        label}], duration_second, duration_frame, fps}}
    DIR/label_map.txt                   the class names
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from action_jax.data import synthetic as videos
from action_jax.localization.synthetic import _segments


def long_video(rng: np.random.Generator, num_frames: int, width: int, height: int,
               max_segments: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(frames [num_frames, H, W, 3] uint8, [(first frame, end frame, class)])."""
    bounds = (_segments(rng, max_segments, min_length=0.15, max_length=0.35,
                        min_gap=0.1) * num_frames).round().astype(int)
    scene = videos.sample_clip(0, rng, width, height)
    # A square of size 0 covers no pixel: the background with its noise alone.
    frames = videos.render_clip(dataclasses.replace(scene, size=0.0), num_frames, rng)
    actions = []
    for first, end in bounds:
        label = int(rng.integers(len(videos.CLASS_NAMES)))
        spec = dataclasses.replace(videos.sample_clip(label, rng, width, height),
                                   background=scene.background, noise_std=scene.noise_std)
        frames[first:end] = videos.render_clip(spec, end - first, rng)
        actions.append((int(first), int(end), label))
    return frames, actions


def make_synthetic_videos(out_dir: str | os.PathLike, num_videos: int = 24, seed: int = 0,
                          num_frames: int = 96, fps: float = 8, width: int = 64,
                          height: int = 64, max_segments: int = 2,
                          val_fraction: float = 0.25) -> dict[str, Any]:
    """Writes the set (layout in the module docstring); returns its paths."""
    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, 'videos'), exist_ok=True)
    num_val = max(1, round(num_videos * val_fraction))
    splits: dict[str, dict[str, Any]] = {'train': {}, 'val': {}}
    for index in range(num_videos):
        rng = np.random.default_rng([seed, index])
        frames, actions = long_video(rng, num_frames, width, height, max_segments)
        name = f'v_own{index:05d}'
        videos.write_video(os.path.join(out_dir, 'videos', name + '.mp4'), frames, fps,
                           options={'preset': 'veryfast'})
        split = 'val' if index >= num_videos - num_val else 'train'
        splits[split][name] = {
            'duration_second': num_frames / fps, 'duration_frame': num_frames, 'fps': fps,
            'annotations': [{'segment': [first / fps, end / fps],
                             'label': videos.CLASS_NAMES[label]}
                            for first, end, label in actions]}
    paths: dict[str, Any] = {'video_dir': os.path.join(out_dir, 'videos')}
    for split, database in splits.items():
        paths[f'{split}_list'] = os.path.join(out_dir, f'{split}_list.txt')
        with open(paths[f'{split}_list'], 'w') as f:
            f.write(''.join(f'{name}.mp4\n' for name in database))
        paths[f'{split}_ann'] = os.path.join(out_dir, f'anet_anno_{split}.json')
        with open(paths[f'{split}_ann'], 'w') as f:
            json.dump(database, f, indent=1)
    paths['label_map'] = os.path.join(out_dir, 'label_map.txt')
    with open(paths['label_map'], 'w') as f:
        f.write(''.join(name + '\n' for name in videos.CLASS_NAMES))
    return paths


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out', help='output directory')
    parser.add_argument('--num-videos', type=int, default=24)
    parser.add_argument('--num-frames', type=int, default=96, help='frames per video')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_videos < 2 or args.num_frames < 16:
        parser.error('need at least 2 videos of at least 16 frames')
    paths = make_synthetic_videos(args.out, args.num_videos, args.seed, args.num_frames)
    print(f'wrote {args.num_videos} videos to {paths["video_dir"]}')
    return paths


if __name__ == '__main__':
    main()
