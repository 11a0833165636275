"""What the data preparation tools share: user errors, atomic outputs, worker pools, frames."""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import sys
from typing import IO, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from action_jax.data.readers import VideoDecodeError, VideoReader
from action_jax.progress import track

T = TypeVar('T')
R = TypeVar('R')

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.mpg', '.mpeg', '.flv')
# Frames decoded per reader call: bounded memory, and each call re-decodes at most one GOP.
CHUNK = 128


class UserError(Exception):
    """Bad input: reported as one line, without a traceback."""


def run(main: Callable[[Sequence[str] | None], object]) -> None:
    """Run a tool's ``main``; a UserError ends it with its one-line message (exit status 1)."""
    try:
        main(None)
    except UserError as exc:
        prog = os.path.basename(sys.argv[0]).removesuffix('.py')
        sys.exit(f'{prog}: error: {exc}')


def add_workers_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--workers', type=int, default=1,
                        help='worker processes (default 1: in this process)')


def add_video_tree_args(parser: argparse.ArgumentParser, out_help: str,
                        short_side_help: str) -> None:
    """SRC OUT --short-side --workers: the arguments of the tools that convert a video tree."""
    parser.add_argument('src', help='folder of videos (any depth, e.g. SRC/<class>/<video>)')
    parser.add_argument('out', help=out_help)
    parser.add_argument('--short-side', type=int, default=256, help=short_side_help)
    add_workers_arg(parser)


@dataclasses.dataclass(frozen=True)
class Job:
    """Make ``out`` from ``video``: ``make(video, out, *options)`` returns a value, e.g. the
    frame count; an ``out`` that exists is skipped and valued by ``existing(out)``."""

    name: str
    video: str
    out: str
    make: Callable[..., object]
    options: tuple = ()
    existing: Callable[[str], object] | None = None


def _run_job(job: Job) -> tuple[str, str, object]:
    """(name, 'written' / 'skipped' / why the video failed, value)."""
    if os.path.exists(job.out):
        return job.name, 'skipped', job.existing(job.out) if job.existing else None
    try:
        return job.name, 'written', job.make(job.video, job.out, *job.options)
    except VideoDecodeError as exc:
        return job.name, exc.reason, None


def run_jobs(jobs: Sequence[Job], workers: int,
             description: str) -> tuple[dict[str, object], dict[str, int]]:
    """Run ``jobs``, printing each failure; the values of the outputs there, and the counts."""
    values, summary = {}, {'written': 0, 'skipped': 0, 'failed': 0}
    for name, outcome, value in parallel_map(_run_job, jobs, workers, description):
        if outcome in ('written', 'skipped'):
            summary[outcome] += 1
            values[name] = value
        else:
            summary['failed'] += 1
            print(f'failed: {name}: {outcome}')
    return values, summary


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                 description: str) -> Iterator[R]:
    """``fn`` over ``items`` in ``workers`` processes, results in completion order, with a bar."""
    if workers < 1:
        raise UserError(f'--workers must be at least 1, got {workers}')
    if workers == 1:
        yield from track(map(fn, items), description, total=len(items))
        return
    # 'spawn': the caller may hold JAX or decoder threads, which a forked child would inherit
    # in an unknown state.
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = [pool.submit(fn, item) for item in items]
        done = concurrent.futures.as_completed(futures)
        for future in track(done, description, total=len(futures)):
            yield future.result()


def find_videos(root: str) -> list[str]:
    """Paths relative to ``root`` of the video files under it (sorted; hidden files skipped)."""
    if not os.path.isdir(root):
        raise UserError(f'not a directory: {root}')
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        for name in filenames:
            if not name.startswith('.') and name.lower().endswith(VIDEO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, name), root))
    if not found:
        raise UserError(f'no videos under {root}')
    return sorted(found)


def partial_path(path: str) -> str:
    """Where ``path`` is written before it is complete: hidden, same folder, same extension."""
    head, tail = os.path.split(path)
    stem, ext = os.path.splitext(tail)
    return os.path.join(head, f'.{stem}.partial{ext}')


def publish(partial: str, path: str) -> None:
    """Move a finished output into place in one step (no half-written ``path`` is ever seen)."""
    os.replace(partial, path)


def discard(path: str) -> None:
    """Remove the file or folder ``path`` if it is there."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def clear_partial(path: str) -> str:
    """The partial name of ``path``, emptied of what an interrupted run left there."""
    partial = partial_path(path)
    discard(partial)
    os.makedirs(os.path.dirname(partial) or '.', exist_ok=True)
    return partial


@contextlib.contextmanager
def open_atomic(path: str) -> Iterator[IO[str]]:
    """``path`` opened for writing text under its partial name, published when the block ends
    without an error."""
    partial = clear_partial(path)
    with open(partial, 'w') as f:
        yield f
    publish(partial, path)


def write_text(path: str, lines: Iterable[str]) -> None:
    """Write ``lines`` (one per line) to ``path`` atomically."""
    with open_atomic(path) as f:
        f.writelines(line + '\n' for line in lines)


def frames(reader: VideoReader) -> Iterator[np.ndarray]:
    """Every frame of ``reader`` [H, W, 3] in order, decoded ``CHUNK`` frames at a time."""
    for start in range(0, len(reader), CHUNK):
        yield from reader.get_frames(np.arange(start, min(start + CHUNK, len(reader))))


def resized_shape(height: int, width: int, short_side: int, even: bool = False) -> tuple[int, int]:
    """(height, width) with the short side ``short_side`` (0: unchanged), aspect ratio kept."""
    h, w = height, width
    if short_side:
        scale = short_side / min(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
    if even:  # yuv420p halves the chroma planes
        h, w = h + h % 2, w + w % 2
    return h, w
