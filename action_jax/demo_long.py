"""Recognise a long video in sliding windows and write it back with the current labels and a
timeline bar (MMAction2's demo/long_video_demo.py).

    python -m action_jax.demo_long VIDEO CONFIG CHECKPOINT LABEL_MAP --out out.mp4
        [--window 16] [--stride 8] [--threshold 0.01] [--top-k 3] [--out-json windows.json]
        [--target-resolution W H]

A window of --window frames starts every --stride frames (the last one ends at the last
frame); the config's test pipeline samples clip_len x num_clips frames evenly from it
(MMAction2 takes that many consecutive frames) and the model scores it. Each output frame
shows the top-k labels scoring at least --threshold of the window whose centre is nearest,
and, along the bottom, every window's top-1 class as a coloured bar with the current
position marked. --out-json writes every window's frames, seconds and top-k predictions.
"""
from __future__ import annotations

import argparse
import colorsys
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from action_jax import apis, windows
from action_jax.data.readers import VideoDecodeError, open_video
from action_jax.demo import (add_target_resolution, check_target_resolution, read_frames,
                              resize_frames, write_output)
from action_jax.label_map import read_label_map
from action_jax.progress import track

_TEXT_COLOUR = (255, 255, 255)
_IDLE_COLOUR = (90, 90, 90)  # timeline where no label reaches the threshold


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('video', help='video file or rawframes directory')
    parser.add_argument('config', help='recognizer config file (get_config())')
    parser.add_argument('checkpoint', type=windows.checkpoint_or_none,
                        help=windows.CHECKPOINT_HELP)
    parser.add_argument('label', help='label map file (one class name per line)')
    parser.add_argument('--out', required=True, help='output .mp4 (or .gif)')
    parser.add_argument('--out-json', default=None, help='per-window predictions (json)')
    parser.add_argument('--window', type=int, default=16, help='frames per window')
    parser.add_argument('--stride', type=int, default=8, help='frames between windows')
    parser.add_argument('--threshold', type=float, default=0.01,
                        help='recognition score threshold')
    parser.add_argument('--top-k', type=int, default=3, help='labels shown per window')
    parser.add_argument('--fps', type=float, default=None,
                        help='output frame rate (default: the video\'s; 30 for rawframes)')
    # Small videos: text drawn at their size is unreadable, so draw on enlarged frames.
    add_target_resolution(parser)
    parser.add_argument('--device', default=None, help="JAX device, e.g. 'cpu' or 'cuda:0'")
    args = parser.parse_args(argv)
    check_target_resolution(parser, args)
    if min(args.window, args.stride, args.top_k) < 1:
        parser.error('--window, --stride and --top-k must be positive')
    if not args.out.lower().endswith(('.mp4', '.gif')):
        parser.error('--out must end with .mp4 or .gif')
    return args


def load_video(video: str, fps: float | None) -> tuple[np.ndarray, float]:
    """(frames [n, H, W, 3] uint8 RGB, frame rate)."""
    if os.path.isdir(video) or fps is not None:
        return read_frames(video), fps or 30.0
    reader = open_video(video)
    try:
        return reader.get_frames(np.arange(len(reader))), reader.fps
    finally:
        reader.close()


def recognise_windows(model, frames: np.ndarray, window: int, stride: int,
                      labels: Sequence[str], top_k: int, threshold: float, fps: float
                      ) -> list[dict[str, Any]]:
    """[{start_frame, end_frame, start_second, end_second, predictions: [[label, score]]}]
    per window; predictions are the top-k scoring at least `threshold`, best first."""
    clip_len, num_clips = windows.sample_shape(model)
    samples = clip_len * num_clips
    windows.check_window(model, samples)
    pipeline = windows.frame_pipeline(model)
    starts = windows.window_starts(len(frames), window, stride, cover_tail=True)
    results = []
    for start in track(starts, 'recognising windows'):
        clips = windows.window_clips(model, frames, [start], window, samples, pipeline)[0]
        top = apis.top_k(apis.predict_scores(model, clips), top_k)
        end = min(int(start) + window, len(frames))
        results.append({'start_frame': int(start), 'end_frame': end,
                        'start_second': start / fps, 'end_second': end / fps,
                        'predictions': [[labels[i], s] for i, s in top if s >= threshold]})
    return results


def nearest_window(num_frames: int, results: Sequence[dict[str, Any]]) -> np.ndarray:
    """For each frame, the index of the window whose centre is nearest."""
    centres = np.array([(r['start_frame'] + r['end_frame'] - 1) / 2 for r in results])
    return np.abs(np.arange(num_frames)[:, None] - centres[None]).argmin(axis=1)


def class_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A distinct saturated RGB colour per class (hues spread evenly)."""
    return {name: tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / len(labels), 0.8, 0.9))
            for i, name in enumerate(labels)}


def draw(frames: np.ndarray, results: Sequence[dict[str, Any]],
         labels: Sequence[str]) -> np.ndarray:
    """Copies of `frames` with their window's labels (top left) and the timeline bar."""
    n, height, width = frames.shape[:3]
    which = nearest_window(n, results)
    colours = class_colours(labels)

    def top1_colour(result):
        preds = result['predictions']
        return colours[preds[0][0]] if preds else _IDLE_COLOUR

    bar_h = max(4, height // 16)
    # Column x of the bar shows the frame at x / width of the video.
    bar = np.array([top1_colour(results[which[min(n - 1, x * n // width)]])
                    for x in range(width)], np.uint8)[None].repeat(bar_h, axis=0)
    font_scale = 0.5 * min(max(min(height, width) / 224, 0.3), 3.0)
    line_h = cv2.getTextSize('Ag', cv2.FONT_HERSHEY_DUPLEX, font_scale, 1)[0][1] + 6
    out = np.ascontiguousarray(frames.copy())
    for f, frame in enumerate(out):
        for i, (name, score) in enumerate(results[which[f]]['predictions']):
            cv2.putText(frame, f'{name}: {score:.2f}', (4, (i + 1) * line_h),
                        cv2.FONT_HERSHEY_DUPLEX, font_scale, _TEXT_COLOUR, 1, cv2.LINE_AA)
        frame[height - bar_h:] = bar
        cursor = max(2, width // 100)  # 2 px at least: 1 would blur away in the H.264
        x = min(f * width // n, width - cursor)
        frame[height - bar_h:, x:x + cursor] = _TEXT_COLOUR
    return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    try:
        labels = read_label_map(args.label)
        model = apis.init_recognizer(args.config, args.checkpoint, device=args.device)
        windows.check_label_map(model, labels, args.label)
        frames, fps = load_video(args.video, args.fps)
        results = recognise_windows(model, frames, args.window, args.stride, labels,
                                    args.top_k, args.threshold, fps)
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        sys.exit(f'error: {e}')
    write_output(args.out, draw(resize_frames(frames, args.target_resolution), results, labels),
                 fps)
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump(results, f, indent=1)
    print(f'{len(results)} windows over {len(frames)} frames; wrote {args.out}')
    return results


if __name__ == '__main__':
    main()
