"""Decode every video under SRC to frame images, MMAction2's rawframes layout.

    python -m action_jax.tools.build_rawframes SRC OUT [--short-side 256] [--ext jpg]
        [--workers N]

``SRC/<class>/<video>.mp4`` becomes ``OUT/<class>/<video>/img_00001.jpg, ...``: the frames of
the project's PyAV reader (VideoInit), same count and order, optionally resized to a short
side (bilinear, as MMAction2's Resize). The frame counts go to ``OUT/frame_counts.txt``
(``<class>/<video> <total_frames>``); ``build_file_list OUT --format rawframes`` writes the
list files. Frame folders that exist are skipped; a folder is written under a hidden partial
name and renamed when complete, so an interrupted run leaves no folder that looks finished.
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import Sequence

import cv2

from action_jax.data.decoding import VideoDecodeError, open_video
from action_jax.tools import _common

FRAME_TMPL = 'img_{:05d}'
COUNTS_FILE = 'frame_counts.txt'


def count_frames(frame_dir: str) -> int:
    """Frame images in a folder (MMAction2 counts the files named img_*)."""
    return sum(name.startswith('img_') for name in os.listdir(frame_dir))


def extract(video: str, frame_dir: str, short_side: int = 0, ext: str = 'jpg') -> int:
    """Write every frame of ``video`` to ``frame_dir``; returns the frame count.

    Raises VideoDecodeError (and leaves no ``frame_dir``) when the video cannot be decoded.
    """
    partial = _common.clear_partial(frame_dir)
    os.makedirs(partial)
    # JPEG quality 95: what MMAction2's extractors (denseflow, OpenCV) write.
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == 'jpg' else []
    count = 0
    try:
        reader = open_video(video, backend='pyav', fallback=False)
        try:
            for count, frame in enumerate(_common.frames(reader), start=1):
                h, w = _common.resized_shape(*frame.shape[:2], short_side)
                if (h, w) != frame.shape[:2]:
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
                path = os.path.join(partial, f'{FRAME_TMPL.format(count)}.{ext}')
                if not cv2.imwrite(path, frame[..., ::-1], params):
                    raise OSError(f'cannot write {path}')
        finally:
            reader.close()
    except BaseException:
        shutil.rmtree(partial)
        raise
    _common.publish(partial, frame_dir)
    return count


def _job(args: tuple[str, str, str, int, str]) -> tuple[str, int | None, str]:
    """(name, frame count or None, 'written' / 'skipped' / the reason it failed)."""
    name, video, frame_dir, short_side, ext = args
    if os.path.isdir(frame_dir):
        return name, count_frames(frame_dir), 'skipped'
    try:
        return name, extract(video, frame_dir, short_side, ext), 'written'
    except VideoDecodeError as exc:
        return name, None, exc.reason


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='folder of videos (any depth, e.g. SRC/<class>/<video>)')
    parser.add_argument('out', help='output folder of frame folders')
    parser.add_argument('--short-side', type=int, default=256,
                        help='resize frames to this short side (0: keep the size)')
    parser.add_argument('--ext', choices=('jpg', 'png'), default='jpg',
                        help='frame image format (png is lossless)')
    _common.add_workers_arg(parser)
    args = parser.parse_args(argv)
    if args.short_side < 0:
        raise _common.UserError(f'--short-side must be >= 0, got {args.short_side}')
    videos = _common.find_videos(args.src)
    if not videos:
        raise _common.UserError(f'no videos under {args.src}')
    jobs = [(os.path.splitext(rel)[0], os.path.join(args.src, rel),
             os.path.join(args.out, os.path.splitext(rel)[0]), args.short_side, args.ext)
            for rel in videos]
    counts, status = {}, {'written': 0, 'skipped': 0}
    for name, count, outcome in _common.parallel_map(_job, jobs, args.workers, 'Extracting'):
        if count is None:
            print(f'failed: {name}: {outcome}')
        else:
            counts[name] = count
            status[outcome] += 1
    _common.write_text(os.path.join(args.out, COUNTS_FILE),
                       (f'{name} {counts[name]}' for name in sorted(counts)))
    failed = len(videos) - len(counts)
    print(f'{status["written"]} videos extracted, {status["skipped"]} already there, '
          f'{failed} failed; frame counts in {os.path.join(args.out, COUNTS_FILE)}')
    return counts


if __name__ == '__main__':
    _common.run(main)
