"""A small synthetic action data set whose classes need temporal order.

Eight classes: two shapes (square, disc) x four motion directions (left, right, up, down).
Each video shows one anti-aliased shape sliding along a straight segment over a static,
textured background with per-frame noise.  Start, travel, size, colour, cross position,
background and noise level are random per video.  The segment's position is drawn
independently of the direction and a 'left' clip is exactly a 'right' clip played
backwards, so a single frame, or the unordered set of frames, says nothing about the sign
of the motion.  A frame-order-blind model (TSN) can learn shape and axis only, so it is
capped at 50% (chance 12.5%); models that see the order (TSM, I3D) can separate all 8.
In practice TSN learns the shape only (top-1 about 25%): after global average pooling a
frame's features say little about where the object is, so the axis is nearly invisible too.
The per-video random draws come from ``default_rng([seed, video number])``, and the
encoder settings are reproducible (see :func:`write_video`): the same seed gives the same
bytes.

Defaults (64x64, 16 frames at 8 fps, 480 videos: 360 train / 120 val) keep generation,
decoding and training cheap on CPU (about 5-15 s to write on 2 cores).  Objects are 19-26 px
(0.3-0.4 of the short side; 14-19 px at the 48 px network input of the synthetic configs) and
travel 60-90% of the free length, 2-3.5 px of the 48 px input between TSM's 8 segments.
Colours are random per video, but the object is brighter than the background in every
channel (object 160-255, background base 20-110).  With random contrast polarity (the
original design) a ResNet trained from scratch does not tell a disc from a square within a
few hundred steps: on freshly rendered frames a small CNN stayed at chance after 300 steps,
against 100% after 100 steps with the fixed polarity; TSN then only memorised its training
videos.

Layout written by :func:`make_synthetic` (MMAction2-like)::

    DIR/label_map.txt                          one class name per line
    DIR/videos_<split>/<class>/<id>.mp4        H.264 (libx264 veryfast, crf 18)
    DIR/synthetic_<split>_list_videos.txt      '<class>/<id>.mp4 <label>'
    DIR/rawframes_<split>/<class>/<id>/img_00001.jpg ...         (with rawframes=True)
    DIR/synthetic_<split>_list_rawframes.txt   '<class>/<id> <total_frames> <label>'
"""
from __future__ import annotations

import dataclasses
import os
from fractions import Fraction

import av
import numpy as np
from PIL import Image

SHAPES = ('square', 'disc')
# Unit motion per direction in image coordinates (x right, y down).
DIRECTIONS = {'left': (-1, 0), 'right': (1, 0), 'up': (0, -1), 'down': (0, 1)}
CLASS_NAMES = tuple(f'{shape}_{direction}' for shape in SHAPES for direction in DIRECTIONS)
SPLITS = ('train', 'val')

_MARGIN = 2.0  # px kept free at the border so that the object is always whole
# 2.5x faster to encode than x264's default 'medium', and no larger on these noisy clips.
_ENCODER_OPTIONS = {'preset': 'veryfast'}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 30, *,
                codec: str = 'libx264', gop_size: int | None = None, crf: int = 18,
                options: dict[str, str] | None = None,
                container_options: dict[str, str] | None = None) -> None:
    """Encode RGB frames [T, H, W, 3] uint8 to ``path`` (container from the extension).

    ``gop_size`` sets the keyframe interval; with libx264/libx265 scene-cut keyframes are
    then disabled so keyframes fall exactly every ``gop_size`` frames.  The settings make
    the output deterministic: one encoder thread, no x264 MB-tree, bit-exact muxing.
    ``options`` go to the encoder, ``container_options`` to the muxer (e.g.
    ``{'movflags': 'faststart'}``).  Note: libx265 4.2 corrupts the heap on some small
    frame sizes (48x40 crashed; 96x64 is fine).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f'frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}')
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f'yuv420p needs even width and height, got {frames.shape[2]}x'
                         f'{frames.shape[1]}')
    codec_options = {}
    if codec in ('libx264', 'h264'):
        # x264's MB-tree reads uninitialised memory on small frames: off for reproducibility.
        codec_options = {'crf': str(crf), 'threads': '1', 'x264-params': 'mbtree=0'}
        if gop_size is not None:
            codec_options['sc_threshold'] = '0'
    elif codec == 'libx265':
        params = 'log-level=error:pools=none:frame-threads=1'
        codec_options = {'crf': str(crf),
                         'x265-params': params + (':scenecut=0' if gop_size else '')}
    codec_options.update(options or {})
    # 'bitexact' leaves out what varies between runs and versions (Matroska's random UIDs).
    muxer_options = {'fflags': '+bitexact', **(container_options or {})}
    with av.open(os.fspath(path), 'w', options=muxer_options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(10000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = 'yuv420p'
        if gop_size is not None:
            stream.gop_size = gop_size
        stream.options = codec_options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
        container.mux(stream.encode())


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Everything random about one clip (positions in px, colours in 0..255)."""

    shape: str
    direction: str
    size: float  # square side or disc diameter
    start: float  # lower end of the travelled segment along the motion axis
    travel: float  # length of that segment
    cross: float  # fixed coordinate across the motion axis
    colour: tuple[float, float, float]
    background: np.ndarray  # [H, W, 3] float32, the same in every frame
    noise_std: float  # per-frame Gaussian noise


def sample_clip(label: int, rng: np.random.Generator, width: int, height: int) -> ClipSpec:
    """Draw a clip of class ``label``; nothing except the time order depends on the sign."""
    shape, direction = CLASS_NAMES[label].split('_')
    horizontal = DIRECTIONS[direction][0] != 0
    along, across = (width, height) if horizontal else (height, width)
    size = rng.uniform(0.3, 0.4) * min(width, height)
    free = along - size - 2 * _MARGIN
    travel = rng.uniform(0.6, 0.9) * free
    start = _MARGIN + rng.uniform(0, free - travel)
    cross = _MARGIN + rng.uniform(0, across - size - 2 * _MARGIN)
    # A dark background and a bright object (every channel; the background's gradient and
    # texture stay below 147): one contrast polarity, which keeps the shape quick to learn.
    base = rng.uniform(20, 110, 3)
    # The object differs from the background by >= 80 per channel on average.
    while True:
        colour = rng.uniform(160, 255, 3)
        if np.abs(colour - base).sum() >= 240:
            break
    return ClipSpec(shape, direction, float(size), float(start), float(travel), float(cross),
                    tuple(float(c) for c in colour), _background(rng, width, height, base),
                    float(rng.uniform(2, 6)))


def _background(rng: np.random.Generator, width: int, height: int,
                base: np.ndarray) -> np.ndarray:
    """Base colour + a linear gradient (within +-21) + a smooth texture (within +-15)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5))
    gradient = ramp[..., None] * rng.uniform(-30, 30, 3)
    coarse = rng.uniform(-15, 15, (4, 6, 3))
    texture = _bilinear(coarse, height, width)
    return (base + gradient + texture).astype(np.float32)


def _bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample a [h, w, C] grid to [height, width, C] by bilinear interpolation."""
    gy = np.linspace(0, grid.shape[0] - 1, height)
    gx = np.linspace(0, grid.shape[1] - 1, width)
    y0 = np.minimum(gy.astype(int), grid.shape[0] - 2)
    x0 = np.minimum(gx.astype(int), grid.shape[1] - 2)
    wy = (gy - y0)[:, None, None]
    wx = (gx - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bottom = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def clip_positions(spec: ClipSpec, frames: int) -> np.ndarray:
    """Top-left corner (x, y) of the object in each frame, [T, 2]."""
    t = np.linspace(0.0, 1.0, frames)
    dx, dy = DIRECTIONS[spec.direction]
    forward = (dx + dy) > 0
    along = spec.start + spec.travel * (t if forward else 1.0 - t)
    cross = np.full(frames, spec.cross)
    return np.stack([along, cross] if dx else [cross, along], axis=1)


def _coverage_1d(lo: float, length: float, n: int) -> np.ndarray:
    """Fraction of each pixel [i, i+1) covered by the interval [lo, lo+length]."""
    edges = np.arange(n, dtype=np.float32)
    return np.clip(np.minimum(edges + 1, lo + length) - np.maximum(edges, lo), 0, 1)


def render_clip(spec: ClipSpec, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 of ``spec``; ``rng`` draws the per-frame noise."""
    height, width = spec.background.shape[:2]
    colour = np.asarray(spec.colour, np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    radius = spec.size / 2
    for i, (x, y) in enumerate(clip_positions(spec, frames)):
        if spec.shape == 'square':
            cover = (_coverage_1d(y, spec.size, height)[:, None]
                     * _coverage_1d(x, spec.size, width)[None, :])
        else:  # anti-aliased disc: distance to the rim, clipped to one pixel
            dist = np.hypot(xx - (x + radius), yy - (y + radius))
            cover = np.clip(radius - dist + 0.5, 0, 1)
        img = spec.background + cover[..., None] * (colour - spec.background)
        if spec.noise_std:
            img = img + spec.noise_std * rng.standard_normal(img.shape, dtype=np.float32)
        out[i] = np.clip(np.rint(img), 0, 255)
    return out


def _split_plan(num_videos: int) -> list[tuple[str, int, int]]:
    """(split, label, video number) for a class-balanced set with ~1/4 validation."""
    per_class = num_videos // len(CLASS_NAMES)
    if per_class < 2:
        raise ValueError(f'need at least {2 * len(CLASS_NAMES)} videos, got {num_videos}')
    num_val = max(1, round(per_class / 4))
    plan = []
    for label in range(len(CLASS_NAMES)):
        for k in range(per_class):
            split = 'val' if k < num_val else 'train'
            plan.append((split, label, label * per_class + k))
    return plan


def _write_rawframes(video_path: str, frame_dir: str) -> int:
    """Decode ``video_path`` and store its frames as img_00001.jpg, ... (as extractors do)."""
    os.makedirs(frame_dir, exist_ok=True)
    count = 0
    with av.open(video_path) as container:
        for count, frame in enumerate(container.decode(video=0), start=1):
            Image.fromarray(frame.to_ndarray(format='rgb24', threads=1)).save(
                os.path.join(frame_dir, f'img_{count:05d}.jpg'), quality=95)
    return count


def make_synthetic(out_dir: str | os.PathLike, num_videos: int = 480, seed: int = 0,
                   rawframes: bool = False, width: int = 64, height: int = 64,
                   frames: int = 16, fps: float = 8) -> dict:
    """Write the data set to ``out_dir`` and return its paths and class names.

    ``num_videos`` is rounded down to a multiple of the 8 classes.  The same arguments give
    byte-identical list files and videos.  Returns ``{'class_names', 'label_map', 'videos':
    {split: {'ann_file', 'data_prefix'}}, 'rawframes': {...}}`` ('rawframes' only when
    requested).
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    label_map = os.path.join(out_dir, 'label_map.txt')
    with open(label_map, 'w') as f:
        f.write(''.join(name + '\n' for name in CLASS_NAMES))
    lines: dict[tuple[str, str], list[str]] = {(s, kind): [] for s in SPLITS
                                                for kind in ('videos', 'rawframes')}
    for split, label, number in _split_plan(num_videos):
        rng = np.random.default_rng([seed, number])
        spec = sample_clip(label, rng, width, height)
        clip = render_clip(spec, frames, rng)
        rel = f'{CLASS_NAMES[label]}/{number:05d}'
        video_path = os.path.join(out_dir, f'videos_{split}', rel + '.mp4')
        os.makedirs(os.path.dirname(video_path), exist_ok=True)
        write_video(video_path, clip, fps, options=_ENCODER_OPTIONS)
        lines[split, 'videos'].append(f'{rel}.mp4 {label}')
        if rawframes:
            total = _write_rawframes(video_path, os.path.join(out_dir, f'rawframes_{split}', rel))
            lines[split, 'rawframes'].append(f'{rel} {total} {label}')
    info: dict = {'class_names': list(CLASS_NAMES), 'label_map': label_map}
    for kind in ('videos', 'rawframes') if rawframes else ('videos',):
        info[kind] = {}
        for split in SPLITS:
            ann_file = os.path.join(out_dir, f'synthetic_{split}_list_{kind}.txt')
            with open(ann_file, 'w') as f:
                f.write(''.join(line + '\n' for line in lines[split, kind]))
            info[kind][split] = {'ann_file': ann_file,
                                 'data_prefix': os.path.join(out_dir, f'{kind}_{split}')}
    return info
