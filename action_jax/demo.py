"""Recognise one video and print the top-5 classes (MMAction2's demo/demo.py).

    python -m action_jax.demo CONFIG CHECKPOINT VIDEO LABEL_MAP [--out-filename out.mp4|out.gif]
        [--fps 30] [--font-scale S] [--font-color white] [--target-resolution W H] [--device cpu]

VIDEO: a video file, a rawframes directory or an http(s) URL. LABEL_MAP: one class name per
line (action_jax/resources/label_map_k400.txt for Kinetics-400). With --out-filename the
video is written again (.mp4, or .gif) with the predicted class drawn on every frame.
"""
from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence

import cv2
import numpy as np

from action_jax import user_errors
from action_jax.apis import downloaded, inference_recognizer, init_recognizer, is_url
from action_jax.data.readers import open_video
from action_jax.label_map import read_label_map

_COLORS = {'white': (255, 255, 255), 'black': (0, 0, 0), 'red': (255, 0, 0),
           'green': (0, 255, 0), 'blue': (0, 0, 255), 'yellow': (255, 255, 0),
           'cyan': (0, 255, 255), 'magenta': (255, 0, 255)}
_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (get_config(); "path.py:arg" passes arg)')
    parser.add_argument('checkpoint', help='MMAction2 .pth or action_jax checkpoint/workdir')
    parser.add_argument('video', help='video file/url or rawframes directory')
    parser.add_argument('label', help='label map file (one class name per line)')
    parser.add_argument('--device', default=None, help="JAX device, e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--fps', type=float, default=30, help='frame rate of the output video')
    parser.add_argument('--font-scale', type=float, default=None,
                        help='OpenCV font scale of the label (default: from the frame size)')
    parser.add_argument('--font-color', default='white',
                        help=f'label colour: {", ".join(_COLORS)} or R,G,B')
    add_target_resolution(parser)
    parser.add_argument('--out-filename', default=None, help='output .mp4 or .gif')
    args = parser.parse_args(argv)
    if args.out_filename and not args.out_filename.lower().endswith(('.mp4', '.gif')):
        parser.error('--out-filename must end with .mp4 or .gif')
    check_target_resolution(parser, args)
    return args


def add_target_resolution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--target-resolution', nargs=2, type=int, default=None,
                        metavar=('W', 'H'),
                        help='resize the output frames; -1 for one side keeps the aspect ratio')


def check_target_resolution(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.target_resolution and (min(args.target_resolution) <= 0
                                   and max(args.target_resolution) <= 0):
        parser.error('--target-resolution needs at least one positive side')


def parse_color(color: str) -> tuple[int, int, int]:
    """A colour name or 'R,G,B' -> an RGB triple."""
    if color.lower() in _COLORS:
        return _COLORS[color.lower()]
    parts = color.split(',')
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f'unknown colour {color!r}: use {", ".join(_COLORS)} or R,G,B')
    return tuple(min(int(p), 255) for p in parts)


def read_frames(video: str) -> np.ndarray:
    """Every frame of a video file or rawframes directory as uint8 RGB [T, H, W, 3]."""
    if os.path.isdir(video):
        names = sorted(n for n in os.listdir(video) if n.lower().endswith(_IMAGE_SUFFIXES))
        frames = [cv2.imread(os.path.join(video, n), cv2.IMREAD_COLOR) for n in names]
        if not frames or any(f is None for f in frames):
            raise ValueError(f'{video!r} holds no readable frame images')
        return np.stack([f[..., ::-1] for f in frames])
    reader = open_video(video)
    try:
        return reader.get_frames(np.arange(len(reader)))
    finally:
        reader.close()


def resize_frames(frames: np.ndarray, target: Sequence[int] | None) -> np.ndarray:
    """Resize to (w, h); a side of -1 follows the aspect ratio."""
    if not target:
        return frames
    h0, w0 = frames.shape[1:3]
    w, h = target
    w = round(h / h0 * w0) if w <= 0 else w
    h = round(w / w0 * h0) if h <= 0 else h
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def draw_label(frames: np.ndarray, text: str, font_scale: float | None = None,
               color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """`text` written in the top-left corner of every frame (a copy)."""
    if font_scale is None:
        # 0.5 at a 224-pixel short edge, in proportion otherwise (MMAction2's adaptive scale).
        font_scale = 0.5 * min(max(min(frames.shape[1:3]) / 224, 0.3), 3.0)
    font = cv2.FONT_HERSHEY_DUPLEX
    (_, text_h), _ = cv2.getTextSize(text, font, font_scale, 1)
    pad = max(2, round(10 * font_scale / 0.5))
    out = np.ascontiguousarray(frames.copy())
    for frame in out:
        cv2.putText(frame, text, (pad, pad + text_h), font, font_scale, color, 1, cv2.LINE_AA)
    return out


def write_output(path: str, frames: np.ndarray, fps: float) -> None:
    """Frames to an .mp4 (H.264) or an animated .gif."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith('.gif'):
        from PIL import Image
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0)
        return
    from action_jax.data.synthetic import write_video
    # yuv420p needs even sides.
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    write_video(path, np.ascontiguousarray(frames[:, :h, :w]), fps)


def main(argv: Sequence[str] | None = None) -> list[tuple[str, float]]:
    args = parse_args(argv)
    color = parse_color(args.font_color)
    labels = read_label_map(args.label)
    model = init_recognizer(args.config, args.checkpoint, device=args.device)
    with contextlib.ExitStack() as stack:
        # A URL is fetched once and serves both the recognition and the output video.
        video = stack.enter_context(downloaded(args.video)) if is_url(args.video) \
            else args.video
        results = inference_recognizer(model, video)
        if max(i for i, _ in results) >= len(labels):
            raise ValueError(f'the label map {args.label!r} names {len(labels)} classes; the '
                             f'model predicts class {max(i for i, _ in results)}')
        named = [(labels[i], score) for i, score in results]
        print('The top-5 labels with corresponding scores are:')
        for name, score in named:
            print(f'{name}: ', score)
        if args.out_filename:
            frames = resize_frames(read_frames(video), args.target_resolution)
            text = f'{named[0][0]}: {named[0][1]:.2f}'
            write_output(args.out_filename, draw_label(frames, text, args.font_scale, color),
                         args.fps)
    return named


if __name__ == '__main__':
    with user_errors.exit_on_user_error():
        main()
