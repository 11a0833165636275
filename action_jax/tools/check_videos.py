"""Decode every video of a list file as training will; report the bad ones, write a clean list.

    python -m action_jax.tools.check_videos LIST --data-prefix DIR [--out GOOD_LIST]
        [--config CFG | --decoder VideoInit|DecordInit|PyAVInit] [--min-frames N] [--workers N]

Each listed video is opened with the training pipeline's reader (the first ``*Init`` step of
the config's train pipeline, or ``--decoder``; readers fall back to the other library as in
training) and all its frames are decoded. A video that is missing, cannot be opened or
decoded, or has fewer than ``--min-frames`` frames (default: the config's SampleFrames
``clip_len * frame_interval``, else 1) is reported with the reason; ``--out`` receives the
list without them, lines unchanged.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from action_jax.tools import load_config_arg, parse_args
from action_jax.data.decoding import TRANSFORMS as DECODE_TRANSFORMS
from action_jax.data.readers import VideoDecodeError
from action_jax.data.pipeline import build_transform
from action_jax.tools import _common

INITS = tuple(name for name in DECODE_TRANSFORMS if name.endswith('Init'))


def check(path: str, init: dict, min_frames: int = 1) -> str | None:
    """Why ``path`` is unusable for training (None: every frame decodes)."""
    if not os.path.isfile(path):
        return 'missing'
    try:
        reader = build_transform(init)({'filename': path})['video_reader']
    except VideoDecodeError as exc:
        return exc.reason
    try:
        if len(reader) < min_frames:
            return f'too short: {len(reader)} frames, training needs {min_frames}'
        for _ in _common.frames(reader):
            pass
    except VideoDecodeError as exc:
        return exc.reason
    finally:
        reader.close()
    return None


def _job(args: tuple[int, str, dict, int]) -> tuple[int, str | None]:
    index, path, init, min_frames = args
    return index, check(path, init, min_frames)


def decode_steps(config_file: str, overrides: Sequence[str] = ()) -> tuple[dict, int]:
    """The train pipeline's reader step and the frames one clip spans, from a config file."""
    config = load_config_arg(config_file, overrides)
    pipeline = config.train_dataloader.dataset.get('pipeline') or []
    init = next((dict(step) for step in pipeline if step.get('type') in INITS), None)
    if init is None:
        raise _common.UserError(f'{config_file}: train_dataloader.dataset.pipeline has no video '
                                f'reader step ({"/".join(INITS)}); is it a rawframe pipeline?')
    sample = next((step for step in pipeline if step.get('type') == 'SampleFrames'), {})
    return init, sample.get('clip_len', 1) * sample.get('frame_interval', 1)


def main(argv: Sequence[str] | None = None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('list', help="video list file ('path label ...' per line)")
    parser.add_argument('--data-prefix', default='', help='folder the listed paths are in')
    parser.add_argument('--out', help='write the list without the bad videos here')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--config', help="take the reader from this config's train pipeline")
    source.add_argument('--decoder', choices=INITS, default=None,
                        help='the reader step (default VideoInit)')
    parser.add_argument('--min-frames', type=int, default=None,
                        help='fewer frames is too short (default: one clip of the config, '
                             'else 1)')
    _common.add_workers_arg(parser)
    args, overrides = parse_args(parser, argv)
    if args.config:
        init, clip_frames = decode_steps(args.config, overrides)
    else:
        init, clip_frames = dict(type=args.decoder or 'VideoInit'), 1
    min_frames = clip_frames if args.min_frames is None else args.min_frames
    try:
        with open(args.list) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise _common.UserError(f'cannot read {args.list}: {exc.strerror}') from None
    jobs = [(i, os.path.join(args.data_prefix, line.split()[0]), init, min_frames)
            for i, line in enumerate(lines) if line.strip()]
    bad = {}
    for index, reason in _common.parallel_map(_job, jobs, args.workers, 'Checking'):
        if reason is not None:
            bad[index] = reason
    for index in sorted(bad):
        print(f'{args.list}, line {index + 1}: {lines[index].split()[0]}: {bad[index]}')
    if args.out:
        _common.write_text(args.out, (line for i, line in enumerate(lines)
                                      if line.strip() and i not in bad))
    print(f'{len(jobs) - len(bad)} of {len(jobs)} videos are good'
          + (f'; wrote {args.out}' if args.out else ''))
    return [(lines[i].split()[0], bad[i]) for i in sorted(bad)]


if __name__ == '__main__':
    _common.run(main)
