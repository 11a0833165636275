"""Packed videos: every frame as a JPEG (or PNG) record in ArrayRecord shards.

Decoding whole videos limits training throughput; a pack decodes them once.  A clip then
reads and decodes only its sampled frames: one record per frame, the frames of a video
contiguous, and ``index.json`` giving each video's first record (a global key over the
shards in order, as grain's ``ArrayRecordDataSource`` numbers them), frame count, fps and
frame size.

Layout written by :func:`pack_videos` (``python -m action_jax.tools.pack_dataset``)::

    DIR/frames-00000.array_record ...   one record per frame, encoded image bytes
    DIR/index.json                      written last: its presence marks a complete pack

Config (MMAction2's video pipeline with two lines changed)::

    dict(type='PackedDataset', ann_file=..., data_prefix=dict(packed=DIR), pipeline=[
        dict(type='PackedInit'),                # was DecordInit
        dict(type='SampleFrames', ...),         # unchanged, as every later transform
        dict(type='PackedDecode'),              # was DecordDecode (which also works)
        ...])

``PackedDataset`` sets ``total_frames`` and ``avg_fps``, ``PackedInit`` the ``video_reader``,
which serves ``VideoDecode`` (registered as ``PackedDecode``) and MMAction2's other decode
transforms like a video reader, so ``frame_inds``/``imgs`` keep their contract.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import cv2
import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from action_jax.data.datasets import PathPrefix, VideoDataset, _LineError
from action_jax.data.decoding import VideoDecode, _image_decoder
from action_jax.data.readers import VideoDecodeError, VideoReader, describe, open_video
from action_jax.data.transforms import _rescale_size

__all__ = ['INDEX_NAME', 'PackedDataset', 'PackedDecode', 'PackedInit', 'PackedVideoReader',
           'encode_video', 'pack_videos', 'read_index']

INDEX_NAME = 'index.json'
FORMAT = 'action_jax.packed/1'
SHARD_TEMPLATE = 'frames-{:05d}.array_record'
TMP_SUFFIX = '.tmp'
EXTENSIONS = ('.jpg', '.png')
# One record per chunk: reading a frame touches only its own bytes.  The images are already
# compressed, so the shards are not.
_WRITER_OPTIONS = 'group_size:1,uncompressed'
# Frames decoded at once while packing: a keyframe interval, split when longer (a split
# costs one re-decode from the keyframe).
_MAX_CHUNK_FRAMES = 300

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- reading

def read_index(packed_dir: str | os.PathLike) -> dict:
    """The pack's index; ValueError naming the directory when it is not a complete pack."""
    path = os.path.join(packed_dir, INDEX_NAME)
    if not os.path.isfile(path):
        raise ValueError(f'{packed_dir} is not a complete pack (no {INDEX_NAME}); build it '
                         'with python -m action_jax.tools.pack_dataset')
    with open(path) as f:
        index = json.load(f)
    if index.get('format') != FORMAT:
        raise ValueError(f'{path}: format {index.get("format")!r}, expected {FORMAT!r}')
    return index


@functools.lru_cache(maxsize=None)
def _open_pack(packed_dir: str) -> tuple[dict, grain.sources.ArrayRecordDataSource]:
    """Index and record source of a pack, once per process (readers open lazily): a pack
    rebuilt with ``--overwrite`` is seen by new processes only."""
    index = read_index(packed_dir)
    shards = [os.path.join(packed_dir, name) for name in index['shards']]
    return index, grain.sources.ArrayRecordDataSource(shards)


class PackedVideoReader(VideoReader):
    """A packed video's frames, read by record and decoded on request.

    Every frame is stored whole, so every frame is a 'keyframe' and MMAction2's 'efficient'
    decoding mode returns the exact frames.
    """

    backend = 'packed'

    def __init__(self, packed_dir: str, offset: int, num_frames: int, fps: float,
                 name: str, decoding_backend: str = 'cv2'):
        self.name = name
        self.fps = fps
        self._num_frames = num_frames
        self.keyframes = np.arange(num_frames)
        self._offset = offset
        self._source = _open_pack(os.fspath(packed_dir))[1]
        self._decode = _image_decoder(decoding_backend)

    def _decode_unique(self, unique: np.ndarray) -> np.ndarray:
        try:
            # One record at a time: __getitems__ would go through a thread pool, which is
            # gone while the interpreter exits with a loader still prefetching.
            return np.stack([self._decode(self._source[self._offset + int(i)], False)
                             for i in unique])
        except (OSError, ValueError, RuntimeError) as exc:
            raise VideoDecodeError(self.name, describe(exc)) from exc


class PackedDataset(VideoDataset):
    """A ``VideoDataset`` list file served from a pack built from the same list.

    Lines name videos as packed (their path relative to the pack's ``--data-prefix``).
    Videos the pack skipped as unreadable are left out with a warning; a video the pack has
    never seen raises ValueError naming the list file and line.  Results: the
    ``VideoDataset`` keys (``filename`` is the video's path inside the pack directory) plus
    ``total_frames``, ``avg_fps``, ``packed_dir`` and ``packed_offset``.

    Args:
        ann_file: the list file.
        data_prefix: the pack directory: a path or ``dict(packed=path)``.
        others: as in ``VideoDataset``.
    """

    _prefix_key = 'packed'

    def __init__(self, ann_file: str | os.PathLike, data_prefix: PathPrefix = None,
                 **kwargs):
        packed_dir = self._prefix(data_prefix)
        if packed_dir is None:
            raise ValueError('PackedDataset needs data_prefix=dict(packed=DIR)')
        self.index = read_index(packed_dir)
        self.num_skipped = 0
        super().__init__(ann_file, data_prefix, **kwargs)
        if self.num_skipped:
            logger.warning('%s: %d videos left out, the pack %s skipped them as unreadable',
                           self.ann_file, self.num_skipped, packed_dir)

    def _load(self) -> list[dict]:
        return [info for info in super()._load() if info is not None]

    def _parse_fields(self, fields: list[str]) -> dict | None:
        info = super()._parse_fields(fields)
        key = fields[0]
        entry = self.index['videos'].get(key)
        if entry is None:
            if key in self.index['skipped']:
                self.num_skipped += 1
                return None
            raise _LineError(f'{key} is not in the pack {self.data_prefix["packed"]}')
        info.update(total_frames=entry['frames'], avg_fps=entry['fps'],
                    packed_dir=self.data_prefix['packed'], packed_offset=entry['offset'])
        return info


class PackedInit:
    """The packed counterpart of ``DecordInit``: a reader of the sample's packed frames.

    Sets ``video_reader`` for a ``PackedDataset`` sample (which comes with ``total_frames``
    and ``avg_fps``).  ``decoding_backend`` decodes the images: 'cv2' (MMAction2's default) or
    'pillow'.  ``kwargs`` (file-client options) have no use here.
    """

    def __init__(self, decoding_backend: str = 'cv2', **kwargs):
        _image_decoder(decoding_backend)  # reject a bad name at build time
        self.decoding_backend = decoding_backend

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        results['video_reader'] = PackedVideoReader(
            results['packed_dir'], results['packed_offset'], results['total_frames'],
            results['avg_fps'], results['filename'], self.decoding_backend)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(decoding_backend={self.decoding_backend})'


class PackedDecode(VideoDecode):
    """VideoDecode under the name a packed pipeline reads best: the reader PackedInit puts
    on the sample does the packed part."""


# ---------------------------------------------------------------------------- writing

def _chunks(keyframes: np.ndarray, num_frames: int) -> Iterator[np.ndarray]:
    """Frame indices in decode-friendly pieces: keyframe intervals of bounded length."""
    bounds = np.append(keyframes, num_frames)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for piece in range(start, stop, _MAX_CHUNK_FRAMES):
            yield np.arange(piece, min(piece + _MAX_CHUNK_FRAMES, stop))


def encode_video(path: str, short_side: int | None, ext: str,
                 quality: int) -> tuple[list[bytes], float, tuple[int, int]]:
    """Every frame of a video as encoded images, its fps and its (height, width) as packed.

    Frames are numbered as the video readers number them (the PyAV reader decodes them), so
    packed frame i is raw frame i.  ``short_side`` resizes (keeping the aspect ratio, area
    interpolation) unless it already matches.  Raises VideoDecodeError.
    """
    reader = open_video(path, backend='pyav')
    params = ([cv2.IMWRITE_JPEG_QUALITY, quality] if ext == '.jpg'
              else [cv2.IMWRITE_PNG_COMPRESSION, 1])
    records, size = [], None
    try:
        for inds in _chunks(reader.keyframes, len(reader)):
            for frame in reader.get_frames(inds):
                h, w = frame.shape[:2]
                if short_side and min(h, w) != short_side:
                    w, h = _rescale_size(w, h, (np.inf, short_side))
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                size = size or (h, w)
                ok, data = cv2.imencode(ext, frame[..., ::-1], params)
                if not ok:
                    raise VideoDecodeError(path, f'cannot encode frame {len(records)} as {ext}')
                records.append(data.tobytes())
    finally:
        reader.close()
    return records, reader.fps, size


def _encode_job(job: tuple[str, str, int | None, str, int]):
    key, path, short_side, ext, quality = job
    try:
        return key, encode_video(path, short_side, ext, quality), None
    except VideoDecodeError as exc:
        return key, None, exc.reason


def pack_options(short_side: int | None, ext: str, quality: int) -> dict:
    """What a pack was made with; a re-run with other options must not reuse it."""
    if ext not in EXTENSIONS:
        raise ValueError(f'ext must be one of {EXTENSIONS}, got {ext!r}')
    if not 1 <= quality <= 100:
        raise ValueError(f'quality must be in 1..100, got {quality}')
    if short_side is not None and short_side < 1:
        raise ValueError(f'short_side must be positive, got {short_side}')
    return dict(short_side=short_side, ext=ext, quality=quality if ext == '.jpg' else None)


def pack_state(out_dir: str | os.PathLike) -> str:
    """'empty', 'complete' (index written), 'incomplete' (shards or temporary files left by
    an interrupted run) or 'foreign' (other files: not a pack directory)."""
    if not os.path.isdir(out_dir):
        return 'empty'
    names = set(os.listdir(out_dir))
    if not names:
        return 'empty'
    ours = {n for n in names if _is_pack_file(n)}
    if names - ours:
        return 'foreign'
    return 'complete' if INDEX_NAME in names else 'incomplete'


def _is_pack_file(name: str) -> bool:
    base = name[:-len(TMP_SUFFIX)] if name.endswith(TMP_SUFFIX) else name
    return base == INDEX_NAME or (base.startswith('frames-') and base.endswith('.array_record'))


def remove_pack(out_dir: str | os.PathLike) -> None:
    """Delete a pack's own files (and nothing else) from ``out_dir``."""
    for name in os.listdir(out_dir):
        if _is_pack_file(name):
            os.remove(os.path.join(out_dir, name))


class _ShardWriter:
    """Appends records to temporary shards, starting a new one past ``shard_bytes``."""

    def __init__(self, out_dir: str, shard_bytes: int):
        self.out_dir, self.shard_bytes = out_dir, shard_bytes
        self.shards: list[str] = []
        self.num_records = 0
        self._writer, self._bytes = None, 0

    def write_video(self, records: Sequence[bytes]) -> int:
        """Writes one video's frames into one shard; returns its first record's key."""
        if self._writer is None or self._bytes >= self.shard_bytes:
            self._close()
            self.shards.append(SHARD_TEMPLATE.format(len(self.shards)))
            self._writer = ArrayRecordWriter(self._tmp(self.shards[-1]), _WRITER_OPTIONS)
            self._bytes = 0
        offset = self.num_records
        for data in records:
            self._writer.write(data)
            self._bytes += len(data)
        self.num_records += len(records)
        return offset

    def _tmp(self, name: str) -> str:
        return os.path.join(self.out_dir, name + TMP_SUFFIX)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> None:
        self._close()
        for name in self.shards:
            os.replace(self._tmp(name), os.path.join(self.out_dir, name))


def pack_videos(videos: Sequence[str], data_prefix: str | os.PathLike | None,
                out_dir: str | os.PathLike, *, short_side: int | None = None,
                ext: str = '.jpg', quality: int = 95, workers: int = 0,
                shard_bytes: int = 1 << 30, source: Mapping[str, Any] | None = None,
                on_video: Callable[[str, str | None], None] | None = None) -> dict:
    """Pack ``videos`` (paths relative to ``data_prefix``) into the empty ``out_dir``.

    Each video's frames go to one shard, in the order given; ``workers`` processes decode
    and encode (0: this process).  Unreadable videos are skipped and listed in the index's
    ``skipped`` with the reason.  Shards are written under temporary names and renamed,
    and the index written, only at the end.  ``on_video(key, error or None)`` is called
    after each video (progress).  ``source`` goes into the index as is (e.g. the list
    file).  Returns the index.
    """
    options = pack_options(short_side, ext, quality)
    out_dir = os.fspath(out_dir)
    state = pack_state(out_dir)
    if state != 'empty':
        raise FileExistsError(f'{out_dir} is not empty ({state}); pack into a new directory')
    os.makedirs(out_dir, exist_ok=True)
    keys = list(dict.fromkeys(videos))  # a video listed twice is packed once
    jobs = [(key, os.path.join(data_prefix, key) if data_prefix else key, short_side, ext,
             quality) for key in keys]
    index = dict(format=FORMAT, **options, source=dict(source or {}), shards=[], videos={},
                 skipped={})
    writer = _ShardWriter(out_dir, shard_bytes)
    pool = multiprocessing.get_context('spawn').Pool(workers) if workers > 0 else None
    try:
        results = pool.imap(_encode_job, jobs) if pool else map(_encode_job, jobs)
        for key, encoded, error in results:
            if error is None:
                records, fps, (height, width) = encoded
                index['videos'][key] = dict(offset=writer.write_video(records),
                                            frames=len(records), fps=fps, height=height,
                                            width=width)
            else:
                index['skipped'][key] = error
            if on_video:
                on_video(key, error)
    finally:
        if pool:
            pool.terminate()
    writer.finish()
    index['shards'] = writer.shards
    tmp = os.path.join(out_dir, INDEX_NAME + TMP_SUFFIX)
    with open(tmp, 'w') as f:
        json.dump(index, f)
    os.replace(tmp, os.path.join(out_dir, INDEX_NAME))
    return index
