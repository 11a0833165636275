"""Features for BMN/BSN from your own videos: a recognizer's backbone over fixed windows.

    python -m action_jax.tools.extract_features CONFIG CHECKPOINT --list LIST \
        --data-prefix DIR --out FEATURE_DIR [--ann-file ANN.json] [--clip-len 16]
        [--stride 16] [--workers 2] [--batch-size 8] [--overwrite]

CONFIG/CHECKPOINT: a TSN, TSM or I3D recognizer (an action_jax checkpoint or an MMAction2
.pth; `none` keeps random weights). LIST: one video per line, its path relative to
--data-prefix first (MMAction2's video lists; anything after the path is ignored).

Each video is cut into windows of --clip-len frames every --stride frames (the frames that
no whole window covers at the end are left out, as ActivityNet's 16-frame features leave
them); each window goes through the config's test pipeline (resize, crop) and the backbone,
average-pooled as the head pools before its fc. Written:
  FEATURE_DIR/<video>.csv   a header line, then one row of feat_dim values per window
                            ([T, feat_dim]: what LoadLocalizationFeature reads; set its
                            temporal_dim to resample to BMN's length by linear interpolation)
  ANN.json                  {<video>: {duration_second, duration_frame, feature_frame, fps,
                            rfps, annotations}} (default FEATURE_DIR/anet_anno.json); entries
                            already there keep their annotations and other keys.
<video> is the list path without its extension, '/' -> '_', with MMAction2's 'v_' prefix.
Re-runs skip videos whose csv exists (--overwrite recomputes them); unreadable videos are
skipped and listed at the end (exit status 1).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from action_jax import tools, windows
from action_jax.progress import track
from action_jax.apis import init_recognizer
from action_jax.data.readers import VideoDecodeError, open_video
from action_jax.tools import _common


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; `args.config` is the loaded config, main's overrides applied."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='recognizer config file (get_config())')
    parser.add_argument('checkpoint', nargs='?', default='none', type=windows.checkpoint_or_none,
                        help=windows.CHECKPOINT_HELP)
    parser.add_argument('--list', required=True, help='video list file (path per line)')
    parser.add_argument('--data-prefix', default='', help='directory the list paths start in')
    parser.add_argument('--out', required=True, help='output directory of the csv files')
    parser.add_argument('--ann-file', default=None,
                        help='annotation json to write/update (default OUT/anet_anno.json)')
    parser.add_argument('--clip-len', type=int, default=16, help='frames per window')
    parser.add_argument('--stride', type=int, default=16, help='frames between windows')
    parser.add_argument('--workers', type=int, default=2,
                        help='threads decoding and preprocessing videos ahead of the model')
    parser.add_argument('--batch-size', type=int, default=8, help='windows per model call')
    parser.add_argument('--device', default=None, help="JAX device, e.g. 'cpu' or 'cuda:0'")
    parser.add_argument('--overwrite', action='store_true',
                        help='recompute videos whose csv already exists')
    args, overrides = tools.parse_args(parser, argv)
    args.config = tools.load_config_arg(args.config, overrides)
    for name in ('clip_len', 'stride', 'workers', 'batch_size'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be positive')
    args.ann_file = args.ann_file or os.path.join(args.out, 'anet_anno.json')
    return args


def video_name(path: str) -> str:
    """The ActivityNet-style name of a list entry: 'a/b.mp4' -> 'v_a_b'."""
    stem = os.path.splitext(path)[0].replace('\\', '/').strip('/').replace('/', '_')
    return stem if stem.startswith('v_') else 'v_' + stem


def read_video_list(path: str) -> list[tuple[str, str]]:
    """[(video name, path in the list)]; raises ValueError naming the line of a clash."""
    entries: dict[str, tuple[int, str]] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            rel = line.split()[0]
            name = video_name(rel)
            if name in entries:
                raise ValueError(f'{path}:{number}: {rel!r} has the same video name {name!r} '
                                 f'as line {entries[name][0]}')
            entries[name] = (number, rel)
    if not entries:
        raise ValueError(f'{path}: the video list is empty')
    return [(name, rel) for name, (_, rel) in entries.items()]


def video_info(num_frames: int, fps: float, clip_len: int, stride: int) -> dict[str, Any]:
    """The annotation entry's fields that the localization data sets read; feature_frame is
    the frames the windows cover."""
    num_windows = (max(num_frames - clip_len, 0)) // stride + 1
    covered = min((num_windows - 1) * stride + clip_len, num_frames)
    return {'duration_second': num_frames / fps, 'duration_frame': num_frames,
            'feature_frame': covered, 'fps': fps, 'rfps': fps}


def write_features(path: str, features: np.ndarray) -> None:
    header = ','.join(f'f{i}' for i in range(features.shape[1]))
    # 9 significant digits read back as the same float32.
    with _common.open_atomic(path) as f:
        np.savetxt(f, features, fmt='%.9g', delimiter=',', header=header, comments='')


class Extractor:
    """Loads videos into window clips (thread-safe) and runs the backbone on them."""

    def __init__(self, model, clip_len: int, stride: int, batch_size: int):
        windows.check_window(model, clip_len)
        self.model = model
        self.clip_len, self.stride, self.batch_size = clip_len, stride, batch_size
        self.pipeline = windows.frame_pipeline(model)

    def load(self, path: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(window clips, annotation fields) of one video."""
        reader = open_video(path)
        try:
            frames = reader.get_frames(np.arange(len(reader)))
            fps = reader.fps
        finally:
            reader.close()
        starts = windows.window_starts(len(frames), self.clip_len, self.stride)
        clips = windows.window_clips(self.model, frames, starts, self.clip_len,
                                     pipeline=self.pipeline)
        return clips, video_info(len(frames), fps, self.clip_len, self.stride)

    def features(self, clips: np.ndarray) -> np.ndarray:
        return windows.window_features(self.model, clips, self.batch_size)


def probe(path: str, clip_len: int, stride: int) -> dict[str, Any]:
    """A video's annotation fields without decoding it (for videos a re-run skips)."""
    reader = open_video(path)
    try:
        return video_info(len(reader), reader.fps, clip_len, stride)
    finally:
        reader.close()


def _prefetch(fn, items: Sequence[Any], workers: int) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item) or the exception it raised), in order, at most `workers` + 1 ahead
    (bounded: window clips of many videos would not fit in memory)."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > workers:
                break
        while pending:
            item, future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            exc = future.exception()
            yield item, exc if exc is not None else future.result()


def extract(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Runs the extraction; returns (annotation database, failure lines)."""
    videos = read_video_list(args.list)
    database: dict[str, Any] = {}
    if os.path.exists(args.ann_file):
        with open(args.ann_file) as f:
            try:
                database = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'{args.ann_file}: not a json file ({e})') from e
    os.makedirs(args.out, exist_ok=True)
    extractor = Extractor(init_recognizer(args.config, args.checkpoint, device=args.device),
                          args.clip_len, args.stride, args.batch_size)

    def csv_path(name: str) -> str:
        return os.path.join(args.out, name + '.csv')

    def source(rel: str) -> str:
        return os.path.join(args.data_prefix, rel)

    todo = [(n, r) for n, r in videos if args.overwrite or not os.path.exists(csv_path(n))]
    infos: dict[str, dict[str, Any]] = {}
    failures = []
    for (name, rel), loaded in track(
            _prefetch(lambda v: extractor.load(source(v[1])), todo, args.workers),
            'extracting features', total=len(todo)):
        if isinstance(loaded, (VideoDecodeError, OSError, ValueError)):
            failures.append(f'{source(rel)}: {loaded}')
            continue
        if isinstance(loaded, BaseException):
            raise loaded
        clips, infos[name] = loaded
        write_features(csv_path(name), extractor.features(clips))
    for name, rel in videos:
        if name not in infos and os.path.exists(csv_path(name)):
            try:
                infos[name] = probe(source(rel), args.clip_len, args.stride)
            except VideoDecodeError as e:  # features kept; their video has gone
                failures.append(f'{source(rel)}: {e}')
    for name, info in infos.items():
        database[name] = {**database.get(name, {'annotations': []}), **info}
    with _common.open_atomic(args.ann_file) as f:
        json.dump(database, f, indent=1)
    return database, failures


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        database, failures = extract(args)
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        sys.exit(f'error: {e}')
    print(f'features of {len(database)} videos in {args.out}, annotations in {args.ann_file}')
    if failures:
        print(f'{len(failures)} videos could not be read and were skipped:', file=sys.stderr)
        for line in failures:
            print(f'  {line}', file=sys.stderr)
        sys.exit(1)
    return database


if __name__ == '__main__':
    main()
