"""Video readers: decord and PyAV behind one interface (`open_video`); data/decoding.py wraps
them in MMAction2's decode transforms.

Readers decode each request once, forward, through the sorted unique frame indices and
scatter the frames back to the requested order; a seek happens only when the next wanted
frame lies beyond a keyframe that has not been reached yet.  The PyAV reader also lets the
decoder skip the non-reference frames nobody asked for: same pixels as decord, ~1.4-1.9x
faster than decord's ``get_batch`` (MMAction2's DecordDecode) on 340x256 H.264 with a
keyframe every 250 frames, sampling 3 or 8 frames per video.

decord has two silent faults the PyAV reader does not share: with open GOPs (x265's
default) it numbers keyframes in decode order and returns wrong frames for requests that
span one, and in MPEG-TS its seeks land on the wrong frames.  It also conceals damaged
data that FFmpeg flags; the PyAV reader raises for a flagged frame and for the frames after
it up to the next keyframe.  Damage the decoder conceals without a flag is invisible to
both.

Every failure to open or decode raises :class:`VideoDecodeError`, which names the file.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
from typing import Any, Sequence

import av
import numpy as np

try:
    # Before decord: decord loads its bundled zlib 1.2.3 globally, and a cv2 imported after
    # it cannot decode PNG files any more ('libpng error: bad parameters to zlib').
    import cv2
except ImportError:  # pragma: no cover - opencv is a project dependency
    cv2 = None
try:  # decord has no wheels for some platforms; the PyAV reader covers them.
    import decord
except ImportError:  # pragma: no cover - decord is installed in the project venv
    decord = None

logger = logging.getLogger(__name__)

Source = str | os.PathLike | bytes

# What the libraries raise for unreadable input.  decord.DECORDError derives from plain
# Exception, so it must be named explicitly.
_LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    av.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError,
) + ((decord.DECORDError,) if decord is not None else ())


class VideoDecodeError(RuntimeError):
    """A video (or frame file) could not be opened or decoded."""

    def __init__(self, filename: Any, reason: str):
        # Both go to ``args`` so that the error survives pickling in data-loader workers.
        super().__init__(str(filename), reason)
        self.filename = str(filename)
        self.reason = reason

    def __str__(self) -> str:
        return f'cannot decode {self.filename}: {self.reason}'


def describe(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {str(exc).strip()[:300]}'


class _FrameMissing(Exception):
    """Internal: a wanted frame did not come out of the decoder."""



class VideoReader:
    """Common part of the readers: index checks, de-duplication and scattering.

    Subclasses set ``name``, ``fps``, ``keyframes`` (sorted display indices) and
    ``_num_frames`` and implement ``_decode_unique(sorted_unique_indices)``.
    """

    backend = ''
    name: str
    fps: float
    keyframes: np.ndarray
    _num_frames: int
    # Only the PyAV reader decodes with several threads on request (PyAVDecode option).
    multi_thread = False

    def __len__(self) -> int:
        return self._num_frames

    def get_frames(self, frame_inds: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at ``frame_inds`` (any order, repeats allowed) as [N, H, W, 3] uint8 RGB."""
        inds = _as_index_array(frame_inds)
        bad = inds[(inds < 0) | (inds >= self._num_frames)]
        if bad.size:
            raise VideoDecodeError(
                self.name, f'frame index {int(bad[0])} out of range [0, {self._num_frames})')
        if inds.size == 0:
            raise VideoDecodeError(self.name, 'no frame indices requested')
        unique, inverse = np.unique(inds, return_inverse=True)
        return self._decode_unique(unique)[inverse]

    def keyframe_before(self, frame_inds: Sequence[int] | np.ndarray) -> np.ndarray:
        """For each index, the last keyframe at or before it ('efficient' decoding)."""
        inds = np.clip(_as_index_array(frame_inds), 0, self._num_frames - 1)
        return self.keyframes[np.searchsorted(self.keyframes, inds, side='right') - 1]

    def _decode_unique(self, unique: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the decoder and the in-memory file."""

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({self.name!r}, frames={self._num_frames}, '
                f'fps={self.fps:g})')


# Decoders that read ``skip_frame`` for every packet (checked exact in the tests); others,
# e.g. libdav1d, read it once when they open and would drop wanted frames.
_SKIP_NONREF_CODECS = frozenset({'h264', 'hevc', 'mpeg4', 'vp8', 'vp9'})
# Videos up to this size keep their packets in memory after the opening pass, so decoding
# needs no second open, demux or seek (~10% of the CPU time of a TSN sample of a 340x256
# Kinetics video); longer ones (e.g. for demo_long) are read again from the file.
_KEEP_PACKETS_MAX_BYTES = 64 << 20


class PyAVReader(VideoReader):
    """Exact frame access with PyAV: one forward pass per request.

    Opening demuxes the stream once (no decoding) to learn every frame's pts and the
    keyframes; small videos keep the container and the packets for decoding, which then
    jumps to keyframes in that list.  Frames are identified by pts rank, which equals the
    decoder's output order and decord's frame numbering; streams without usable pts are
    decoded from the start and frames are counted instead.
    """

    backend = 'pyav'

    def __init__(self, source: Source, name: str | None = None):
        self.name = name or _source_name(source)
        self._source = source
        self.frames_decoded = 0  # frames out of the decoder, for profiling (benchmarks/)
        self._container = self._packets = None
        try:
            self._index(keep=_source_size(source) <= _KEEP_PACKETS_MAX_BYTES)
        except BaseException as exc:
            self.close()
            if isinstance(exc, _LIBRARY_ERRORS):
                raise VideoDecodeError(self.name, describe(exc)) from exc
            raise

    def _index(self, keep: bool) -> None:
        """The opening pass: frame count, pts, keyframes (and the packets if `keep`)."""
        container = self._open()
        if keep:
            self._container, self._packets = container, []
        with contextlib.nullcontext() if keep else container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.guessed_rate or 0)
            self._codec = stream.codec_context.name
            declared = stream.frames
            present, packets = 0, []
            for packet in container.demux(stream):
                if packet.size:
                    present += 1
                    if keep:
                        self._packets.append(packet)
                    # Packets flagged 'discard' (edit lists) are decoded, never shown.
                    if not packet.is_discard:
                        packets.append((packet.pts, packet.is_keyframe))
        if not packets:
            raise VideoDecodeError(self.name, 'no video frames')
        if declared and present < declared:
            raise VideoDecodeError(
                self.name, f'truncated or damaged: {present} of {declared} frames present')
        self._num_frames = len(packets)
        pts = [p for p, _ in packets]
        is_key = np.array([k for _, k in packets], dtype=bool)
        sorted_pts = sorted(pts) if None not in pts else []
        if sorted_pts and len(set(sorted_pts)) == len(sorted_pts):
            self._index_of_pts: dict[int, int] | None = {p: i for i, p in enumerate(sorted_pts)}
            self._pts = np.array(sorted_pts, dtype=np.int64)
            self.keyframes = np.sort([self._index_of_pts[p] for p, k in packets if k])
        else:
            self._index_of_pts = None  # counting mode: decode order is display order
            self.keyframes = np.flatnonzero(is_key)
        if self.keyframes.size == 0 or self.keyframes[0] != 0:
            # The first frame is always reachable by decoding from the start.
            self.keyframes = np.concatenate([[0], self.keyframes]).astype(np.int64)
        if keep:
            self._key_packet = {p.pts: i for i, p in enumerate(self._packets) if p.is_keyframe}

    def _open(self) -> av.container.InputContainer:
        if isinstance(self._source, bytes):
            return av.open(io.BytesIO(self._source))
        return av.open(os.fspath(self._source))

    def _decode_unique(self, unique: np.ndarray) -> np.ndarray:
        try:
            try:
                return self._forward(unique, fast=True)
            except _FrameMissing:
                if self._index_of_pts is None:
                    raise  # that was already the plain pass
                # Odd files can defeat seeking or frame skipping; the plain pass is exact.
                logger.debug('%s: fast decoding missed a frame, decoding plainly', self.name)
                return self._forward(unique, fast=False)
        except _FrameMissing as exc:
            raise VideoDecodeError(self.name, f'frame {exc} could not be decoded') from None
        except _LIBRARY_ERRORS as exc:
            raise VideoDecodeError(self.name, describe(exc)) from exc

    def _forward(self, wanted: np.ndarray, fast: bool) -> np.ndarray:
        """Decode ``wanted`` (sorted, unique) in one pass from the start.

        ``fast`` (needs pts) seeks ahead to keyframes and skips unwanted non-reference frames.
        """
        by_pts = self._index_of_pts
        fast = fast and by_pts is not None
        # Keyframe to start from for each wanted frame; 0 means 'decode from the start'.
        keys = self.keyframe_before(wanted) if fast else np.zeros_like(wanted)
        skip = fast and self._codec in _SKIP_NONREF_CODECS
        wanted_pts = set(self._pts[wanted].tolist()) if skip else set()
        out: list[np.ndarray] = []
        kept = self._container is not None
        with contextlib.nullcontext(self._container) if kept else self._open() as container:
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if not ctx.is_open:  # threads are chosen before the decoder opens
                if self.multi_thread:
                    stream.thread_type = 'AUTO'
                else:  # PyAV's default starts a slice-thread pool per video
                    ctx.thread_count = 1
            count = 0  # frames since the start, for streams without usable pts
            skipping = ctx.skip_frame = 'DEFAULT'
            while True:
                n = len(out)
                pos = keys[n] - 1  # display index of the last frame the decoder gave back
                tainted = False  # a corrupt frame was seen since the last clean keyframe
                for packet in self._packets_from(container, stream, keys[n]):
                    if skip:
                        # Non-reference frames can be dropped unless they are wanted:
                        # nothing else depends on them, so the output stays exact.
                        mode = ('DEFAULT' if packet is None or packet.pts is None
                                or packet.pts in wanted_pts else 'NONREF')
                        if mode != skipping:
                            ctx.skip_frame = skipping = mode
                    for frame in ctx.decode(packet):
                        self.frames_decoded += 1
                        if by_pts is None:
                            idx, count = count, count + 1
                        else:
                            idx = by_pts.get(frame.pts, -1)
                            if idx < 0:
                                raise _FrameMissing(int(wanted[n]))
                        if frame.is_corrupt:
                            tainted = True
                        elif frame.key_frame:
                            tainted = False
                        if idx <= pos:
                            continue  # leading frames of an open GOP after a seek
                        pos = idx
                        if idx > wanted[n]:
                            raise _FrameMissing(int(wanted[n]))
                        if idx == wanted[n]:
                            if tainted:
                                raise VideoDecodeError(
                                    self.name, f'damaged frame data at frame {idx}')
                            out.append(_to_rgb(frame))
                            n += 1
                            if n == len(wanted):
                                return np.stack(out)
                    if keys[n] > pos + 1:
                        break  # the next wanted frame is past an unreached keyframe: seek
                else:
                    raise _FrameMissing(int(wanted[n]))

    def _packets_from(self, container, stream, key: int):
        """The packets from the keyframe at display index `key` to the end (None: flush the
        decoder), the decoder reset to start there."""
        if self._packets is None:  # a fresh container for each pass
            if key > 0:  # seeking resets the decoder
                container.seek(int(self._pts[key]), stream=stream, backward=True,
                               any_frame=False)
            return container.demux(stream)
        start = self._key_packet.get(int(self._pts[key])) if key > 0 else 0
        if start is None:
            raise _FrameMissing(key)
        stream.codec_context.flush_buffers()
        return itertools.chain(itertools.islice(self._packets, start, None), [None])

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._packets = None
        self._source = b''


class DecordReader(VideoReader):
    """decord's VideoReader, asked once per request for the sorted unique indices.

    decord decodes forward within a GOP for sorted requests; unsorted or repeated ones
    would make it seek again.  A decord reader that failed once stays broken, so a decode
    failure goes to a fresh PyAV reader when ``fallback`` is set.
    """

    backend = 'decord'

    def __init__(self, source: Source, name: str | None = None, num_threads: int = 1,
                 fallback: bool = True):
        self.name = name or _source_name(source)
        self._source = source
        self._fallback = fallback
        if decord is None:
            raise VideoDecodeError(self.name, 'decord is not installed')
        uri = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
        try:
            self._vr = decord.VideoReader(uri, num_threads=num_threads)
            self._num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
            self.keyframes = np.asarray(self._vr.get_key_indices(), dtype=np.int64)
        except _LIBRARY_ERRORS as exc:
            raise VideoDecodeError(self.name, describe(exc)) from exc
        if self._num_frames == 0:
            raise VideoDecodeError(self.name, 'no video frames')
        declared = _declared_frames(source)
        if declared > self._num_frames:
            # decord reads what is there and would conceal the cut; PyAV knows the count.
            raise VideoDecodeError(
                self.name,
                f'truncated or damaged: {self._num_frames} of {declared} frames present')
        if self.keyframes.size == 0 or self.keyframes[0] != 0:
            self.keyframes = np.concatenate([[0], self.keyframes]).astype(np.int64)

    def _decode_unique(self, unique: np.ndarray) -> np.ndarray:
        try:
            return self._vr.get_batch(unique.tolist()).asnumpy()
        except _LIBRARY_ERRORS as exc:
            self._vr = None  # unusable from now on
            if not self._fallback:
                raise VideoDecodeError(self.name, describe(exc)) from exc
            logger.debug('%s: decord failed (%s), decoding with PyAV', self.name, describe(exc))
            return PyAVReader(self._source, self.name).get_frames(unique)

    def close(self) -> None:
        self._vr = None
        self._source = b''


READERS = {'pyav': PyAVReader, 'decord': DecordReader}


def open_video(source: Source, backend: str = 'decord', fallback: bool = True,
               num_threads: int = 1, name: str | None = None) -> VideoReader:
    """Open a video file (path) or an in-memory video (bytes).

    ``backend`` is 'decord' or 'pyav'; with ``fallback`` the other library is tried when
    the first cannot open the video.  ``name`` labels errors for bytes sources.
    Raises VideoDecodeError when no backend can open it.
    """
    if backend not in READERS:
        raise ValueError(f'unknown video backend {backend!r}; choose from {sorted(READERS)}')
    name = name or _source_name(source)
    if isinstance(source, bytes):
        if not source:
            raise VideoDecodeError(name, 'empty data')
    elif not os.path.isfile(source):
        raise VideoDecodeError(name, 'no such file')
    elif os.path.getsize(source) == 0:
        raise VideoDecodeError(name, 'empty file')
    order = [backend] + [b for b in READERS if b != backend and fallback]
    errors = []
    for b in order:
        try:
            if b == 'decord':
                return DecordReader(source, name, num_threads=num_threads, fallback=fallback)
            return PyAVReader(source, name)
        except VideoDecodeError as exc:
            errors.append(f'{b}: {exc.reason}')
            logger.debug('%s: %s cannot open it (%s)', name, b, exc.reason)
    raise VideoDecodeError(name, '; '.join(errors))


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    # One swscale thread: faster for small frames than the default pool (and no thread
    # pile-up in data-loader workers); same pixels as decord.
    return frame.to_ndarray(format='rgb24', threads=1)


def _source_size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else os.path.getsize(source)


def _source_name(source: Source) -> str:
    return '<bytes>' if isinstance(source, bytes) else os.fspath(source)


def _declared_frames(source: Source) -> int:
    """Frame count stated by the container (0 when unknown or unreadable)."""
    try:
        data = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
        with av.open(data) as container:
            return container.streams.video[0].frames
    except _LIBRARY_ERRORS:
        return 0


def _as_index_array(frame_inds: Sequence[int] | np.ndarray) -> np.ndarray:
    inds = np.asarray(frame_inds).reshape(-1)
    if inds.dtype.kind == 'f' and np.array_equal(inds, np.round(inds)):
        inds = inds.astype(np.int64)
    if inds.dtype.kind not in 'iu' and inds.size:
        raise ValueError(f'frame indices must be integers, got dtype {inds.dtype}')
    return inds.astype(np.int64)
