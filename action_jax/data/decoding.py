"""MMAction2's decode transforms: DecordInit/Decode and PyAVInit/Decode over the video
readers of data/readers.py, and RawFrameDecode for frame files.

Every failure to open or decode raises VideoDecodeError, which names the file.
"""
from __future__ import annotations

import io
import os

import numpy as np

from action_jax import optional
# cv2 as readers.py imports it: before decord, whose bundled zlib breaks a later cv2's PNG.
from action_jax.data.readers import (READERS, VideoDecodeError, VideoReader, cv2, decord,
                                     describe, open_video)


def _flat_frame_inds(results: dict) -> np.ndarray:
    inds = np.asarray(results['frame_inds'])
    if inds.ndim != 1:  # MMAction2 squeezes; flattening also covers [clips, clip_len]
        inds = inds.reshape(-1)
        results['frame_inds'] = inds
    return inds


def _store_imgs(results: dict, imgs: np.ndarray) -> dict:
    """Set imgs and the shapes; scale normalised boxes to pixels as MMAction2 does."""
    results['imgs'] = imgs
    h, w = int(imgs.shape[1]), int(imgs.shape[2])
    results['original_shape'] = (h, w)
    results['img_shape'] = (h, w)
    if 'gt_bboxes' in results:
        scale = np.array([w, h, w, h])
        results['gt_bboxes'] = (results['gt_bboxes'] * scale).astype(np.float32)
        if results.get('proposals') is not None:
            results['proposals'] = (results['proposals'] * scale).astype(np.float32)
    return results


def _check_io_backend(io_backend: str) -> str:
    if io_backend != 'disk':
        raise ValueError(f"only io_backend='disk' is supported, got {io_backend!r}")
    return io_backend


class VideoInit:
    """Open ``results['filename']`` (or ``results['video_bytes']``) with a video reader.

    Sets ``video_reader``, ``total_frames`` and ``avg_fps``.  ``backend`` picks the
    library ('pyav' is the faster one here); ``fallback`` tries the other on failure.
    ``kwargs`` (MMAction2's file-client options) have no use with the disk backend.
    """

    def __init__(self, backend: str = 'pyav', io_backend: str = 'disk', num_threads: int = 1,
                 fallback: bool = True, **kwargs):
        if backend not in READERS:
            raise ValueError(f'unknown video backend {backend!r}')
        self.backend = backend
        self.io_backend = _check_io_backend(io_backend)
        self.num_threads = num_threads
        self.fallback = fallback

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        filename = results['filename']
        if 'video_bytes' in results:
            source = results['video_bytes']
        else:
            source = filename
            # MMAction2's DecordInit assumes '.mp4' for names without an extension.
            if not os.path.splitext(filename)[1] and not os.path.exists(filename):
                source = filename = filename + '.mp4'
        reader = open_video(source, backend=self.backend, fallback=self.fallback,
                            num_threads=self.num_threads, name=str(filename))
        results['video_reader'] = reader
        results['total_frames'] = len(reader)
        results['avg_fps'] = reader.fps
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(backend={self.backend}, io_backend={self.io_backend}, '
                f'num_threads={self.num_threads}, fallback={self.fallback})')


class DecordInit(VideoInit):
    """MMAction2's DecordInit: a decord reader (PyAV if decord cannot open the file)."""

    def __init__(self, io_backend: str = 'disk', num_threads: int = 1, **kwargs):
        if decord is None:
            optional.note_missing('decord', 'DecordInit decodes with the PyAV reader (same frames)')
        super().__init__('decord' if decord is not None else 'pyav', io_backend, num_threads,
                         **kwargs)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(io_backend={self.io_backend}, '
                f'num_threads={self.num_threads})')


class PyAVInit(VideoInit):
    """MMAction2's PyAVInit: a PyAV reader (decord if PyAV cannot open the file).

    Unlike MMAction2, ``total_frames`` is the number of frames present, not the
    container's claim, so no index has to wrap around.
    """

    def __init__(self, io_backend: str = 'disk', **kwargs):
        super().__init__('pyav', io_backend, **kwargs)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(io_backend={self.io_backend})'


class VideoDecode:
    """Decode ``results['frame_inds']`` from ``results['video_reader']`` into ``imgs``.

    'accurate' returns the exact frames; 'efficient' returns, for each index, the last
    keyframe at or before it (MMAction2's fast, inexact mode).  Frame indices of videos are
    0-based: SampleFrames has already added ``start_index`` (0 for videos).  The reader is
    removed from ``results`` and closed.
    """

    def __init__(self, mode: str = 'accurate', multi_thread: bool = False):
        if mode not in ('accurate', 'efficient'):
            raise ValueError(f"mode must be 'accurate' or 'efficient', got {mode!r}")
        self.mode = mode
        self.multi_thread = multi_thread

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        reader: VideoReader = results.pop('video_reader')
        inds = _flat_frame_inds(results)
        reader.multi_thread = self.multi_thread
        try:
            if self.mode == 'efficient':
                inds = reader.keyframe_before(inds)
            imgs = reader.get_frames(inds)
        finally:
            reader.close()
        return _store_imgs(results, imgs)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(mode={self.mode}, multi_thread={self.multi_thread})'


class DecordDecode(VideoDecode):
    """MMAction2's DecordDecode (works with any reader from the Init transforms)."""

    def __init__(self, mode: str = 'accurate'):
        super().__init__(mode)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(mode={self.mode})'


class PyAVDecode(VideoDecode):
    """MMAction2's PyAVDecode; ``multi_thread`` lets FFmpeg use its frame threads."""

    def __init__(self, multi_thread: bool = False, mode: str = 'accurate'):
        super().__init__(mode, multi_thread)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(multi_thread={self.multi_thread}, mode={self.mode})'


def _image_decoder(decoding_backend: str):
    """bytes, grayscale -> uint8 array ([H, W, 3] RGB or [H, W])."""
    if decoding_backend == 'cv2' and cv2 is not None:
        def decode(data: bytes, gray: bool) -> np.ndarray:
            flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            if img is None:
                raise ValueError('cv2 cannot decode the image')
            return img if gray else np.ascontiguousarray(img[..., ::-1])
        return decode
    if decoding_backend == 'pillow':
        from PIL import Image

        def decode(data: bytes, gray: bool) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img.convert('L' if gray else 'RGB'))
        return decode
    raise ValueError(f"decoding_backend must be 'cv2' (if installed) or 'pillow', got "
                     f"{decoding_backend!r}")


class RawFrameDecode:
    """Load extracted frames ``frame_dir/filename_tmpl.format(idx + offset)``.

    ``frame_inds`` already include the dataset's ``start_index`` (1 for MMAction2 rawframe
    lists).  RGB gives [N, H, W, 3]; 'Flow' reads the x and y images
    (``filename_tmpl.format('x', idx)``) and gives [2N, H, W], x and y interleaved as in
    MMAction2.  Each distinct frame is read once.  ``decoding_backend`` defaults to 'cv2'
    (MMAction2's default), or 'pillow' without OpenCV; the two may decode JPEGs with small
    pixel differences.  ``kwargs`` (file-client options) have no use with the disk backend.
    """

    def __init__(self, io_backend: str = 'disk', decoding_backend: str | None = None, **kwargs):
        self.io_backend = _check_io_backend(io_backend)
        self.decoding_backend = decoding_backend or ('pillow' if cv2 is None else 'cv2')
        self._decode = _image_decoder(self.decoding_backend)

    def _load(self, path: str, gray: bool) -> np.ndarray:
        try:
            with open(path, 'rb') as f:
                return self._decode(f.read(), gray)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises SyntaxError too
            raise VideoDecodeError(path, describe(exc)) from exc

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        frame_dir = results['frame_dir']
        tmpl = results.get('filename_tmpl', 'img_{:05}.jpg')
        modality = results.get('modality', 'RGB')
        offset = int(results.get('offset', 0))
        inds = _flat_frame_inds(results)
        if inds.size == 0:
            raise VideoDecodeError(frame_dir, 'no frame indices requested')
        unique, inverse = np.unique(inds.astype(np.int64), return_inverse=True)
        if modality == 'RGB':
            frames = [self._load(os.path.join(frame_dir, tmpl.format(int(i) + offset)), False)
                      for i in unique]
        elif modality == 'Flow':
            frames = [np.stack([
                self._load(os.path.join(frame_dir, tmpl.format(axis, int(i) + offset)), True)
                for axis in ('x', 'y')]) for i in unique]
        else:
            raise ValueError(f"modality must be 'RGB' or 'Flow', got {modality!r}")
        if len({f.shape for f in frames}) > 1:
            raise VideoDecodeError(frame_dir, 'frames differ in size')
        imgs = np.stack(frames)[inverse]
        if modality == 'Flow':
            imgs = imgs.reshape(-1, *imgs.shape[2:])
        return _store_imgs(results, imgs)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(io_backend={self.io_backend}, '
                f'decoding_backend={self.decoding_backend})')


TRANSFORMS = {
    'VideoInit': VideoInit,
    'VideoDecode': VideoDecode,
    'DecordInit': DecordInit,
    'DecordDecode': DecordDecode,
    'PyAVInit': PyAVInit,
    'PyAVDecode': PyAVDecode,
    'RawFrameDecode': RawFrameDecode,
}
