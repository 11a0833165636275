"""Re-encode videos small and with short keyframe intervals (MMAction2's 'dense-encoded' videos).

    python -m action_jax.tools.transcode_videos SRC OUT [--short-side 256] [--gop 16]
        [--crf 23] [--workers N]

Every video under SRC is written to the same relative path under OUT as H.264 (libx264
'veryfast', yuv420p, MP4): resized to the short side (even sizes, as yuv420p needs), a
keyframe exactly every ``--gop`` frames (no scene-cut keyframes), the frames of the project's
PyAV reader at the source's average frame rate. Random access then decodes at most
``gop - 1`` frames that nobody asked for: MMAction2 measured its TSN pipeline 2.3x faster on
such videos (see benchmarks/RESULTS.md for this project). Existing outputs are skipped; each
is written under a hidden partial name and renamed when complete.
"""
from __future__ import annotations

import argparse
import os
from fractions import Fraction
from typing import Sequence

import av
import numpy as np

from action_jax.data.readers import open_video
from action_jax.tools import _common


def transcode(video: str, out: str, short_side: int = 256, gop: int = 16, crf: int = 23) -> int:
    """Re-encode ``video`` to ``out`` (MP4/H.264); returns the frame count.

    Raises VideoDecodeError (and leaves no ``out``) when the video cannot be decoded.
    """
    reader = open_video(video, backend='pyav', fallback=False)
    partial = _common.clear_partial(out)
    count = 0
    try:
        with av.open(partial, 'w', format='mp4') as container:
            stream = container.add_stream(
                'libx264', rate=Fraction(reader.fps or 30).limit_denominator(100000))
            stream.pix_fmt = 'yuv420p'
            stream.gop_size = gop
            # sc_threshold=0: keyframes exactly every `gop` frames, none at scene cuts.
            stream.options = {'crf': str(crf), 'sc_threshold': '0', 'preset': 'veryfast'}
            for count, frame in enumerate(_common.frames(reader), start=1):
                if count == 1:
                    stream.height, stream.width = _common.resized_shape(
                        *frame.shape[:2], short_side, even=True)
                container.mux(stream.encode(_scaled(frame, stream.width, stream.height)))
            container.mux(stream.encode())
    except BaseException:
        _common.discard(partial)
        raise
    finally:
        reader.close()
    _common.publish(partial, out)
    return count


def _scaled(rgb: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """The frame at the output size in the encoder's format (swscale, bilinear)."""
    frame = av.VideoFrame.from_ndarray(rgb, format='rgb24')
    return frame.reformat(width=width, height=height, format='yuv420p',
                          interpolation='BILINEAR')


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    _common.add_video_tree_args(parser, 'output folder (same relative paths, .mp4)',
                                'output short side in pixels (0: keep the size, made even)')
    parser.add_argument('--gop', type=int, default=16, help='frames between keyframes')
    parser.add_argument('--crf', type=int, default=23,
                        help='x264 constant rate factor (quality; lower is better)')
    args = parser.parse_args(argv)
    if args.short_side < 0 or args.gop < 1:
        raise _common.UserError(f'need --short-side >= 0 and --gop >= 1, got '
                                f'{args.short_side} and {args.gop}')
    jobs = [_common.Job(rel, os.path.join(args.src, rel),
                        os.path.join(args.out, os.path.splitext(rel)[0] + '.mp4'),
                        transcode, (args.short_side, args.gop, args.crf))
            for rel in _common.find_videos(args.src)]
    _, summary = _common.run_jobs(jobs, args.workers, 'Transcoding')
    print(f'{summary["written"]} videos transcoded, {summary["skipped"]} already there, '
          f'{summary["failed"]} failed')
    return summary


if __name__ == '__main__':
    _common.run(main)
