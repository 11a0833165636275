"""Temporal action proposals of one video from its extracted features, drawn as a PNG.

    python -m action_jax.demo_localization FEATURES_CSV CONFIG CHECKPOINT --video VIDEO
        --out proposals.png [--ann-file ANN.json] [--top-k 5] [--frames 8] [--out-json P.json]

FEATURES_CSV: the video's features from `action_jax.tools.extract_features` (resampled to the
model's temporal_dim). CONFIG/CHECKPOINT: a BMN (e.g. configs/bmn_own_videos.py and its
workdir). The proposals are BMN's Soft-NMS'ed ones in seconds, as the test mode writes them;
the PNG shows sampled frames of VIDEO over the time axis, the ground truth when --ann-file
has the video, and the top-k proposals (action_jax/localization/visualize.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from PIL import Image, ImageDraw

from action_jax.apis import init_localizer
from action_jax.data.readers import VideoDecodeError, open_video
from action_jax.localization.data import LoadLocalizationFeature
from action_jax.localization.visualize import _LABEL_WIDTH, _MARGIN, draw_proposals
from action_jax.windows import CHECKPOINT_HELP, checkpoint_or_none


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('features', help="the video's feature csv (extract_features)")
    parser.add_argument('config', help='BMN config file')
    parser.add_argument('checkpoint', type=checkpoint_or_none, help=CHECKPOINT_HELP)
    parser.add_argument('--video', required=True, help='the video the features come from')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--ann-file', default=None,
                        help='annotation json: ground truth to draw (and the duration)')
    parser.add_argument('--top-k', type=int, default=5, help='proposals to draw')
    parser.add_argument('--frames', type=int, default=8, help='video frames to show')
    parser.add_argument('--width', type=int, default=900, help='image width in pixels')
    parser.add_argument('--out-json', default=None, help='also write the proposals here')
    parser.add_argument('--device', default=None, help="JAX device, e.g. 'cpu' or 'cuda:0'")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.frames < 1:
        parser.error('--top-k and --frames must be positive')
    return args


def video_entry(video: str, ann_file: str | None) -> tuple[str, dict[str, Any]]:
    """(video name, its annotation entry): from `ann_file` when it has the video, else the
    duration read from the video (no ground truth)."""
    name = os.path.splitext(os.path.basename(video))[0]
    if ann_file:
        with open(ann_file) as f:
            database = json.load(f)
        for key in (name, 'v_' + name):
            if key in database:
                return key, database[key]
    reader = open_video(video)
    try:
        return name, {'duration_frame': len(reader), 'duration_second': len(reader) / reader.fps,
                      'annotations': []}
    finally:
        reader.close()


def propose(model, features_csv: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """BMN's proposals [{'segment': [s0, s1], 'score'}] for one feature csv, best first."""
    feature = LoadLocalizationFeature(model.temporal_dim)(
        {'feature_path': features_csv})['raw_feature']
    if feature.shape[1] != model.feat_dim:
        raise ValueError(f'{features_csv}: {feature.shape[1]} features per row; the model '
                         f'takes feat_dim={model.feat_dim}')
    prediction = model.predict({'inputs': feature[None]})
    return model.post_process(jax.tree.map(lambda a: np.asarray(a)[0], prediction), entry)


def frame_strip(video: str, duration: float, count: int, width: int) -> Image.Image:
    """`count` frames sampled evenly in time, each centred over its time on the axis of
    `draw_proposals` (same margins), on a white strip `width` wide."""
    left, right = _MARGIN + _LABEL_WIDTH, width - _MARGIN
    reader = open_video(video)
    try:
        times = (np.arange(count) + 0.5) / count
        frames = reader.get_frames((times * len(reader)).astype(int))
    finally:
        reader.close()
    thumb_w = (right - left) // count
    thumb_h = max(1, round(thumb_w * frames.shape[1] / frames.shape[2]))
    strip = Image.new('RGB', (width, thumb_h + 2 * _MARGIN), 'white')
    ImageDraw.Draw(strip).text((_MARGIN, _MARGIN), f'{duration:.1f} s video', fill='black')
    for t, frame in zip(times, frames):
        x = round(left + t * (right - left) - thumb_w / 2)
        strip.paste(Image.fromarray(frame).resize((thumb_w, thumb_h)), (x, _MARGIN))
    return strip


def render(video: str, name: str, entry: dict[str, Any], proposals: list[dict[str, Any]],
           top_k: int, frames: int, width: int) -> Image.Image:
    """The frame strip above the ground truth / proposals timeline."""
    duration = float(entry['duration_second'])
    timeline = draw_proposals(entry.get('annotations', []), proposals, duration, top_k=top_k,
                              width=width, title=name)
    strip = frame_strip(video, duration, frames, width)
    image = Image.new('RGB', (width, strip.height + timeline.height), 'white')
    image.paste(strip, (0, 0))
    image.paste(timeline, (0, strip.height))
    return image


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    try:
        name, entry = video_entry(args.video, args.ann_file)
        model = init_localizer(args.config, args.checkpoint, device=args.device)
        if not hasattr(model, 'post_process') or not hasattr(model, 'temporal_dim'):
            raise ValueError(f'{args.config}: the model is a {type(model).__name__}, not a BMN')
        proposals = propose(model, args.features, entry)
        image = render(args.video, name, entry, proposals, args.top_k, args.frames, args.width)
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        sys.exit(f'error: {e}')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    image.save(args.out)
    if args.out_json:
        with open(args.out_json, 'w') as f:
            json.dump({name: proposals}, f, indent=1)
    best = ', '.join(f'{p["segment"][0]:.1f}-{p["segment"][1]:.1f} s ({p["score"]:.2f})'
                     for p in proposals[:3])
    print(f'{name}: {len(proposals)} proposals, best {best}; wrote {args.out}')
    return proposals


if __name__ == '__main__':
    main()
