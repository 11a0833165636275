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
from typing import Sequence

import cv2

from action_jax.data.readers import open_video
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
        _common.discard(partial)
        raise
    _common.publish(partial, frame_dir)
    return count


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    _common.add_video_tree_args(parser, 'output folder of frame folders',
                                'resize frames to this short side (0: keep the size)')
    parser.add_argument('--ext', choices=('jpg', 'png'), default='jpg',
                        help='frame image format (png is lossless)')
    args = parser.parse_args(argv)
    if args.short_side < 0:
        raise _common.UserError(f'--short-side must be >= 0, got {args.short_side}')
    jobs = []
    for rel in _common.find_videos(args.src):
        name = os.path.splitext(rel)[0]
        jobs.append(_common.Job(name, os.path.join(args.src, rel), os.path.join(args.out, name),
                                extract, (args.short_side, args.ext), count_frames))
    counts, summary = _common.run_jobs(jobs, args.workers, 'Extracting')
    _common.write_text(os.path.join(args.out, COUNTS_FILE),
                       (f'{name} {counts[name]}' for name in sorted(counts)))
    print(f'{summary["written"]} videos extracted, {summary["skipped"]} already there, '
          f'{summary["failed"]} failed; frame counts in {os.path.join(args.out, COUNTS_FILE)}')
    return counts


if __name__ == '__main__':
    _common.run(main)
