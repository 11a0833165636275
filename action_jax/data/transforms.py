"""MMAction2 1.2's frame sampling, geometric, normalisation and formatting transforms.

Each transform keeps MMAction2's class name, constructor arguments and results-dict keys, so a
pipeline config ports line by line. Calling convention (no registry base class):
`t(results, rng=None) -> results`. Random transforms draw only from `rng` (a fresh
`np.random.default_rng()` when None), so one per-sample generator makes a sample reproducible.

`results['imgs']` is a numpy array [N, H, W, C] (or [N, H, W] for flow); a list of frames is
accepted as input and stacked. Resizing uses OpenCV's `cv2.resize`, as MMAction2 does through
mmcv, so uint8 outputs are bit-identical to MMAction2's.

Not supported (they raise): `lazy=True` (MMAction2's deferred crop/resize/flip with `Fuse`),
keypoints and `gt_bboxes` in the geometric transforms.
"""
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

# mmcv.imresize's names for the OpenCV interpolation codes.
_CV2_INTERP = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    """torch's `_pair`: an int becomes (v, v); a pair must hold ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f'Expected an int or a pair of ints, got {value!r}')
    return int(pair[0]), int(pair[1])


def _imgs(results: dict) -> np.ndarray:
    """`results['imgs']` as one array (frames given as a list are stacked in place)."""
    imgs = results['imgs']
    if not isinstance(imgs, np.ndarray):
        imgs = results['imgs'] = np.stack(imgs)
    return imgs


def _img_shape(results: dict) -> tuple[int, int]:
    """(h, w), taken from the frames when no transform has set it yet."""
    if 'img_shape' not in results:
        results['img_shape'] = tuple(_imgs(results).shape[1:3])
    return results['img_shape']


def _map_frames(imgs: np.ndarray, out_hw: tuple[int, int], op) -> np.ndarray:
    """Runs the OpenCV call `op(src, dst)` on every frame, writing into one new array.

    Writing into a preallocated contiguous array is much faster than stacking cv2's outputs,
    and cv2.flip is ~20x faster than numpy's copy of a reversed view.
    """
    out = np.empty((len(imgs), ) + tuple(out_hw) + imgs.shape[3:], dtype=imgs.dtype)
    for src, dst in zip(imgs, out):
        op(src, dst)
    return out


def _flip_frames(imgs: np.ndarray, direction: str) -> np.ndarray:
    code = 1 if direction == 'horizontal' else 0  # cv2.flip: 1 mirrors x, 0 mirrors y
    return _map_frames(imgs, imgs.shape[1:3], lambda src, dst: cv2.flip(src, code, dst=dst))


def _check_supported(results: dict, lazy: bool) -> None:
    if lazy:
        raise NotImplementedError('lazy=True (fused crop/resize/flip) is not supported')
    for key in ('keypoint', 'gt_bboxes'):
        if key in results:
            raise NotImplementedError(f'Geometric transforms do not update {key!r} here')


def _crop(results: dict, x: int, y: int, w: int, h: int) -> dict:
    """Crops every frame to [x, x + w) x [y, y + h) and updates the crop metadata.

    `crop_quadruple` (x, y, w, h relative to the original frame) composes with earlier crops in
    float32, as MMAction2 does.
    """
    img_h, img_w = results['img_shape']
    old = np.asarray(results.get('crop_quadruple', (0, 0, 1, 1)), dtype=np.float32)
    ratios = np.array([x / img_w, y / img_h, w / img_w, h / img_h], dtype=np.float32)
    scale = old[2:]
    results['crop_quadruple'] = np.concatenate([old[:2] + ratios[:2] * scale, ratios[2:] * scale])
    results['crop_bbox'] = np.array([x, y, x + w, y + h])
    results['img_shape'] = (h, w)
    if 'imgs' in results:
        results['imgs'] = _imgs(results)[:, y:y + h, x:x + w]
    return results


class _Transform:
    """Shared `__repr__`: the class name and the attributes named in `_repr_keys`."""

    _repr_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={getattr(self, k)}' for k in self._repr_keys)
        return f'{type(self).__name__}({args})'


# --------------------------------------------------------------------------------------------
# Frame sampling
# --------------------------------------------------------------------------------------------

class SampleFrames(_Transform):
    """Samples `num_clips` clips of `clip_len` frames, `frame_interval` apart.

    Adds `frame_inds` (int32, clip-major), `clip_len`, `frame_interval`, `num_clips`. Test mode
    is deterministic: 2D models (clip_len 1) take segment centres; 3D models spread the clip
    starts evenly with round-half-to-even. MMAction2 raises ZeroDivisionError for
    `twice_sample=True, num_clips=1` with clip_len > 1; this raises ValueError.
    """

    _repr_keys = ('clip_len', 'frame_interval', 'num_clips', 'temporal_jitter', 'twice_sample',
                  'out_of_bound_opt', 'test_mode', 'keep_tail_frames', 'target_fps')

    def __init__(self, clip_len: int, frame_interval: int = 1, num_clips: int = 1,
                 temporal_jitter: bool = False, twice_sample: bool = False,
                 out_of_bound_opt: str = 'loop', test_mode: bool = False,
                 keep_tail_frames: bool = False, target_fps: float | None = None):
        if out_of_bound_opt not in ('loop', 'repeat_last'):
            raise ValueError(f"out_of_bound_opt must be 'loop' or 'repeat_last', "
                             f'got {out_of_bound_opt!r}')
        self.clip_len = clip_len
        self.frame_interval = frame_interval
        self.num_clips = num_clips
        self.temporal_jitter = temporal_jitter
        self.twice_sample = twice_sample
        self.out_of_bound_opt = out_of_bound_opt
        self.test_mode = test_mode
        self.keep_tail_frames = keep_tail_frames
        self.target_fps = target_fps

    def _ori_clip_len(self, fps_scale_ratio: float) -> float:
        """Frames spanned by one clip in the source video."""
        if self.target_fps is not None:
            return max(1.0, self.clip_len * self.frame_interval * fps_scale_ratio)
        if self.test_mode:
            return (self.clip_len - 1) * self.frame_interval + 1
        return self.clip_len * self.frame_interval

    def _train_offsets(self, num_frames: int, ori_clip_len: float,
                       rng: np.random.Generator) -> np.ndarray:
        span = num_frames - ori_clip_len + 1
        if self.keep_tail_frames:
            if num_frames <= ori_clip_len - 1:
                return np.zeros(self.num_clips, dtype=np.int32)
            avg = span / self.num_clips
            offsets = np.arange(self.num_clips) * avg + rng.uniform(0, avg, self.num_clips)
            return offsets.astype(np.int32)
        avg = int(span // self.num_clips)
        if avg > 0:  # one random offset inside each of num_clips equal segments
            return np.arange(self.num_clips) * avg + rng.integers(avg, size=self.num_clips)
        if num_frames > max(self.num_clips, ori_clip_len):  # too short for one segment a clip
            return np.sort(rng.integers(int(span), size=self.num_clips))
        if avg == 0:
            return np.around(np.arange(self.num_clips) * (span / self.num_clips))
        return np.zeros(self.num_clips, dtype=np.int32)

    def _test_offsets(self, num_frames: int, ori_clip_len: float) -> np.ndarray:
        if self.clip_len == 1:  # 2D recognizers: segment centres (frame_interval is ignored)
            avg = num_frames / self.num_clips
            base = np.arange(self.num_clips) * avg
            offsets = base + avg / 2.0
            return np.concatenate([offsets, base]) if self.twice_sample else offsets
        max_offset = max(num_frames - ori_clip_len, 0)
        num_clips = self.num_clips * (2 if self.twice_sample else 1)
        if num_clips == 1:
            return np.array([max_offset // 2])
        if self.num_clips == 1:
            raise ValueError('SampleFrames(test_mode=True, twice_sample=True) needs num_clips > 1 '
                             'when clip_len > 1 (MMAction2 divides by num_clips - 1 and raises '
                             'ZeroDivisionError)')
        # The denominator is num_clips - 1 even with twice_sample: the extra clips wrap around.
        step = max_offset / (self.num_clips - 1)
        if self.target_fps is not None:
            return np.arange(num_clips) * np.floor(step)
        return np.round(np.arange(num_clips) * step)

    def _sample_clips(self, num_frames: int, ori_clip_len: float,
                      rng: np.random.Generator | None) -> np.ndarray:
        if self.test_mode:
            return self._test_offsets(num_frames, ori_clip_len)
        return self._train_offsets(num_frames, ori_clip_len, _rng(rng))

    def _frame_offsets(self, ori_clip_len: float) -> np.ndarray:
        """Offsets of a clip's frames from its start."""
        if self.target_fps is not None:
            return np.linspace(0, ori_clip_len - 1, self.clip_len).astype(np.int32)
        return np.arange(self.clip_len) * self.frame_interval

    def _fps_scale_ratio(self, results: dict) -> float:
        fps = results.get('avg_fps')
        return fps / self.target_fps if self.target_fps is not None and fps else 1.0

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        total_frames = results['total_frames']
        ori_clip_len = self._ori_clip_len(self._fps_scale_ratio(results))
        offsets = self._sample_clips(total_frames, ori_clip_len, rng)
        inds = offsets[:, None] + self._frame_offsets(ori_clip_len)[None, :]
        if self.temporal_jitter:
            inds = inds + _rng(rng).integers(self.frame_interval, size=inds.shape)
        if self.out_of_bound_opt == 'loop':
            inds = np.mod(inds, total_frames)
        else:  # 'repeat_last': indices past the end repeat the clip's last valid frame
            safe = inds < total_frames
            last = np.max(safe * inds, axis=1, keepdims=True)
            inds = np.where(safe, inds, last)
        results['frame_inds'] = (inds.reshape(-1) + results['start_index']).astype(np.int32)
        results['clip_len'] = self.clip_len
        results['frame_interval'] = self.frame_interval
        results['num_clips'] = self.num_clips
        return results


class DenseSampleFrames(SampleFrames):
    """Dense sampling: `num_clips` clips `sample_range // num_clips` apart from one start.

    Train mode draws the start; test mode uses `num_sample_positions` evenly spaced starts, giving
    `num_sample_positions * num_clips` clips.
    """

    _repr_keys = ('clip_len', 'frame_interval', 'num_clips', 'sample_range',
                  'num_sample_positions', 'temporal_jitter', 'out_of_bound_opt', 'test_mode')

    def __init__(self, *args, sample_range: int = 64, num_sample_positions: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_range = sample_range
        self.num_sample_positions = num_sample_positions

    def _sample_clips(self, num_frames: int, ori_clip_len: float,
                      rng: np.random.Generator | None) -> np.ndarray:
        sample_position = max(1, 1 + num_frames - self.sample_range)
        base = np.arange(self.num_clips) * (self.sample_range // self.num_clips)
        if self.test_mode:
            starts = np.linspace(0, sample_position - 1, num=self.num_sample_positions, dtype=int)
        else:  # MMAction2's randint(0, sample_position - 1) never picks the last position
            starts = [0 if sample_position == 1 else _rng(rng).integers(0, sample_position - 1)]
        return np.concatenate([(base + start) % num_frames for start in starts])


# --------------------------------------------------------------------------------------------
# Geometric transforms
# --------------------------------------------------------------------------------------------

def _rescale_size(w: int, h: int, scale: float | tuple[float, float]) -> tuple[int, int]:
    """mmcv.rescale_size: scale by a factor, or fit (long, short) edge limits keeping ratio."""
    if isinstance(scale, tuple):
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    else:
        factor = scale
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)


class Resize(_Transform):
    """Resizes frames with cv2.resize (INTER_LINEAR: half-pixel centres, no antialiasing).

    `scale`: a float factor, or a tuple. With `keep_ratio` the tuple bounds the long and the
    short edge, and `(-1, s)` sets the short edge to `s`; without it, the tuple is (w, h).
    Updates `img_shape`, `keep_ratio` and `scale_factor` (float32 [w, h], cumulative).
    """

    _repr_keys = ('scale', 'keep_ratio', 'interpolation', 'lazy')

    def __init__(self, scale: float | Sequence[int], keep_ratio: bool = True,
                 interpolation: str = 'bilinear', lazy: bool = False):
        if isinstance(scale, float):
            if scale <= 0:
                raise ValueError(f'Invalid scale {scale}, must be positive.')
        elif isinstance(scale, Sequence):
            scale = tuple(scale)
            if min(scale) == -1:  # an infinite long edge: only the short edge constrains
                scale = (np.inf, max(scale))
        else:
            raise TypeError(f'Scale must be float or tuple of int, but got {type(scale)}')
        if interpolation not in _CV2_INTERP:
            raise ValueError(f'interpolation must be one of {sorted(_CV2_INTERP)}')
        self.scale = scale
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation
        self.lazy = lazy

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        img_h, img_w = _img_shape(results)
        if self.keep_ratio:
            new_w, new_h = _rescale_size(img_w, img_h, self.scale)
        else:
            new_w, new_h = self.scale
        factor = np.array([new_w / img_w, new_h / img_h], dtype=np.float32)
        results['scale_factor'] = results.get('scale_factor', np.ones(2, np.float32)) * factor
        results['img_shape'] = (new_h, new_w)
        results['keep_ratio'] = self.keep_ratio
        if 'imgs' in results:
            code = _CV2_INTERP[self.interpolation]
            results['imgs'] = _map_frames(
                _imgs(results), (new_h, new_w),
                lambda src, dst: cv2.resize(src, (new_w, new_h), dst=dst, interpolation=code))
        return results


class RandomCrop(_Transform):
    """Square crop of side `size` at a random position.

    Like MMAction2 (`np.random.randint(0, img - size)`), the last offset is never drawn.
    """

    _repr_keys = ('size', 'lazy')

    def __init__(self, size: int, lazy: bool = False):
        if not isinstance(size, int):
            raise TypeError(f'Size must be an int, but got {type(size)}')
        self.size = size
        self.lazy = lazy

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        img_h, img_w = _img_shape(results)
        if self.size > img_h or self.size > img_w:
            raise ValueError(f'Crop size {self.size} exceeds the image shape {(img_h, img_w)}')
        rng = _rng(rng)
        y = int(rng.integers(0, img_h - self.size)) if img_h > self.size else 0
        x = int(rng.integers(0, img_w - self.size)) if img_w > self.size else 0
        return _crop(results, x, y, self.size, self.size)


def _float_pair(value: Sequence[float], name: str) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2:
        raise TypeError(f'{name} must be a pair of floats, got {value!r}')
    return pair


class RandomResizedCrop(_Transform):
    """Inception-style crop: random area fraction and log-uniform aspect ratio (w / h).

    Tries 10 candidates; falls back to the centred square of the short side.
    """

    _repr_keys = ('area_range', 'aspect_ratio_range', 'lazy')

    def __init__(self, area_range: Sequence[float] = (0.08, 1.0),
                 aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3), lazy: bool = False):
        self.area_range = _float_pair(area_range, 'area_range')
        self.aspect_ratio_range = _float_pair(aspect_ratio_range, 'aspect_ratio_range')
        if not 0 < self.area_range[0] <= self.area_range[1] <= 1:
            raise ValueError(f'area_range must satisfy 0 < lo <= hi <= 1, got {area_range}')
        if not 0 < self.aspect_ratio_range[0] <= self.aspect_ratio_range[1]:
            raise ValueError(f'aspect_ratio_range must satisfy 0 < lo <= hi, '
                             f'got {aspect_ratio_range}')
        self.lazy = lazy

    @staticmethod
    def get_crop_bbox(img_shape: tuple[int, int], area_range: tuple[float, float],
                      aspect_ratio_range: tuple[float, float], rng: np.random.Generator,
                      max_attempts: int = 10) -> tuple[int, int, int, int]:
        """Returns (left, top, right, bottom)."""
        img_h, img_w = img_shape
        area = img_h * img_w
        log_ratios = np.log(aspect_ratio_range)
        aspect_ratios = np.exp(rng.uniform(log_ratios[0], log_ratios[1], size=max_attempts))
        target_areas = rng.uniform(*area_range, size=max_attempts) * area
        crop_ws = np.round(np.sqrt(target_areas * aspect_ratios)).astype(np.int32)
        crop_hs = np.round(np.sqrt(target_areas / aspect_ratios)).astype(np.int32)
        for crop_w, crop_h in zip(crop_ws.tolist(), crop_hs.tolist()):
            if crop_h <= img_h and crop_w <= img_w:
                x = int(rng.integers(0, img_w - crop_w + 1))
                y = int(rng.integers(0, img_h - crop_h + 1))
                return x, y, x + crop_w, y + crop_h
        size = min(img_h, img_w)
        x, y = (img_w - size) // 2, (img_h - size) // 2
        return x, y, x + size, y + size

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        left, top, right, bottom = self.get_crop_bbox(
            _img_shape(results), self.area_range, self.aspect_ratio_range, _rng(rng))
        return _crop(results, left, top, right - left, bottom - top)


class MultiScaleCrop(_Transform):
    """TSN's corner/centre crop with width and height each a random scale of the short side.

    `input_size` is (w, h); crop sizes within 3 pixels of it snap to it. Scale levels of w and
    h differ by at most `max_wh_scale_gap`. Positions are random (`random_crop`) or one of 5 or
    13 fixed ones. Adds `scales`.
    """

    _repr_keys = ('input_size', 'scales', 'max_wh_scale_gap', 'random_crop', 'num_fixed_crops',
                  'lazy')

    def __init__(self, input_size: int | Sequence[int], scales: Sequence[float] = (1, ),
                 max_wh_scale_gap: int = 1, random_crop: bool = False, num_fixed_crops: int = 5,
                 lazy: bool = False):
        if num_fixed_crops not in (5, 13):
            raise ValueError(f'Num_fix_crops must be in {[5, 13]}, but got {num_fixed_crops}')
        self.input_size = _pair(input_size)
        self.scales = tuple(scales)
        self.max_wh_scale_gap = max_wh_scale_gap
        self.random_crop = random_crop
        self.num_fixed_crops = num_fixed_crops
        self.lazy = lazy

    def _fixed_offsets(self, w_step: int, h_step: int) -> list[tuple[int, int]]:
        # In quarters of the free space: 4 corners and centre, then 8 more for 13 crops.
        quarters = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
        if self.num_fixed_crops == 13:
            quarters += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        return [(qx * w_step, qy * h_step) for qx, qy in quarters]

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        rng = _rng(rng)
        img_h, img_w = _img_shape(results)
        base_size = min(img_h, img_w)
        crop_sizes = [int(base_size * s) for s in self.scales]
        candidates = [(w, h) for i, h in enumerate(crop_sizes) for j, w in enumerate(crop_sizes)
                      if abs(i - j) <= self.max_wh_scale_gap]
        # A size within 3 pixels of the network input snaps to it.
        crop_w, crop_h = (target if abs(size - target) < 3 else size for size, target
                          in zip(candidates[rng.integers(len(candidates))], self.input_size))
        if self.random_crop:
            x = int(rng.integers(0, img_w - crop_w + 1))
            y = int(rng.integers(0, img_h - crop_h + 1))
        else:
            offsets = self._fixed_offsets((img_w - crop_w) // 4, (img_h - crop_h) // 4)
            x, y = offsets[rng.integers(len(offsets))]
        results['scales'] = self.scales
        return _crop(results, x, y, crop_w, crop_h)


class CenterCrop(_Transform):
    """Crops the centre `crop_size` (w, h); the offsets round down."""

    _repr_keys = ('crop_size', 'lazy')

    def __init__(self, crop_size: int | Sequence[int], lazy: bool = False):
        self.crop_size = _pair(crop_size)
        self.lazy = lazy

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        img_h, img_w = _img_shape(results)
        crop_w, crop_h = self.crop_size
        return _crop(results, (img_w - crop_w) // 2, (img_h - crop_h) // 2, crop_w, crop_h)


def _multi_crop(results: dict, crop_size: tuple[int, int], offsets: list[tuple[int, int]],
                with_flips: bool) -> dict:
    """Stacks the crops at `offsets` crop-major ([crop 0 frames, crop 1 frames, ...]).

    With `with_flips`, each crop's frames are followed by their horizontal mirrors. `crop_bbox`
    gets one row per output frame.
    """
    imgs = _imgs(results)
    crop_w, crop_h = crop_size
    views, bboxes = [], []
    for x, y in offsets:
        crop = imgs[:, y:y + crop_h, x:x + crop_w]
        views += [crop, _flip_frames(crop, 'horizontal')] if with_flips else [crop]
        bboxes += [[x, y, x + crop_w, y + crop_h]] * (len(crop) * (2 if with_flips else 1))
    results['imgs'] = np.concatenate(views)
    results['crop_bbox'] = np.array(bboxes)
    results['img_shape'] = results['imgs'].shape[1:3]
    return results


class ThreeCrop(_Transform):
    """Three crops along the long side (order: left/top, right/bottom, middle).

    The crop must span the short side. With an odd leftover the "right" crop stops one pixel
    before the edge, as in MMAction2.
    """

    _repr_keys = ('crop_size', )

    def __init__(self, crop_size: int | Sequence[int]):
        self.crop_size = _pair(crop_size)

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        img_h, img_w = _imgs(results).shape[1:3]
        crop_w, crop_h = self.crop_size
        if crop_h == img_h:
            step = (img_w - crop_w) // 2
            offsets = [(0, 0), (2 * step, 0), (step, 0)]
        elif crop_w == img_w:
            step = (img_h - crop_h) // 2
            offsets = [(0, 0), (0, 2 * step), (0, step)]
        else:
            raise ValueError(f'ThreeCrop{self.crop_size} needs the crop to span the short side '
                             f'of the {(img_h, img_w)} frames')
        return _multi_crop(results, self.crop_size, offsets, with_flips=False)


class TenCrop(_Transform):
    """The 4 corners and the centre, each followed by its horizontal flip.

    Corners sit at 4 quarter-steps of the free space, so they need not be flush with the edge.
    """

    _repr_keys = ('crop_size', )

    def __init__(self, crop_size: int | Sequence[int]):
        self.crop_size = _pair(crop_size)

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        img_h, img_w = _imgs(results).shape[1:3]
        crop_w, crop_h = self.crop_size
        w_step, h_step = (img_w - crop_w) // 4, (img_h - crop_h) // 4
        offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step),
                   (2 * w_step, 2 * h_step)]
        return _multi_crop(results, self.crop_size, offsets, with_flips=True)


class Flip(_Transform):
    """Flips all frames with probability `flip_ratio`; sets `flip` and `flip_direction`.

    Flow frames (modality 'Flow', x/y interleaved) also have their x components inverted
    (255 - v). `flip_label_map` relabels flipped samples. `left_kp`/`right_kp` are accepted for
    config compatibility; keypoints are not supported.
    """

    _repr_keys = ('flip_ratio', 'direction', 'flip_label_map', 'lazy')
    _directions = ('horizontal', 'vertical')

    def __init__(self, flip_ratio: float = 0.5, direction: str = 'horizontal',
                 flip_label_map: dict[int, int] | None = None, left_kp: Sequence[int] | None = None,
                 right_kp: Sequence[int] | None = None, lazy: bool = False):
        if direction not in self._directions:
            raise ValueError(f'Direction {direction} is not supported. '
                             f'Currently support ones are {list(self._directions)}')
        self.flip_ratio = flip_ratio
        self.direction = direction
        self.flip_label_map = flip_label_map
        self.left_kp = left_kp
        self.right_kp = right_kp
        self.lazy = lazy

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        _check_supported(results, self.lazy)
        modality = results.get('modality', 'RGB')
        if modality == 'Flow' and self.direction != 'horizontal':
            raise ValueError('Flow frames can only be flipped horizontally')
        flip = bool(_rng(rng).random() < self.flip_ratio)
        results['flip'] = flip
        results['flip_direction'] = self.direction
        if not flip:
            return results
        if self.flip_label_map is not None:
            results['label'] = self.flip_label_map.get(results['label'], results['label'])
        if 'imgs' in results:
            imgs = _flip_frames(_imgs(results), self.direction)
            if modality == 'Flow':  # mirrored motion: the x components change sign
                imgs[0::2] = 255 - imgs[0::2]
            results['imgs'] = imgs
        return results


# --------------------------------------------------------------------------------------------
# Normalisation and formatting
# --------------------------------------------------------------------------------------------

class Normalize(_Transform):
    """(img - mean) / std per channel, as float32 (MMAction2 0.x; 1.x does it in the model).

    RGB: `to_bgr` reverses the channels first (mean/std then refer to the new order). The
    result (float32 subtract, then times 1 / std in float64, rounded to float32) is within 2
    ulps of mmcv.imnormalize_, whose OpenCV kernels round differently per CPU (SIMD).
    Flow: x/y frames interleaved in `imgs` are paired into [N/2, H, W, 2]; `adjust_magnitude`
    scales them by `scale_factor`.
    """

    _repr_keys = ('mean', 'std', 'to_bgr', 'adjust_magnitude')

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_bgr: bool = False,
                 adjust_magnitude: bool = False):
        if not isinstance(mean, Sequence) or not isinstance(std, Sequence):
            raise TypeError(f'Mean and std must be sequences, got {type(mean)}, {type(std)}')
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self._std_inv = 1 / self.std.astype(np.float64)  # as mmcv.imnormalize_
        self.to_bgr = to_bgr
        self.adjust_magnitude = adjust_magnitude

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        imgs = _imgs(results)
        modality = results.get('modality', 'RGB')
        cfg = dict(mean=self.mean, std=self.std, to_bgr=self.to_bgr)
        if modality == 'RGB':
            out = (imgs[..., ::-1] if self.to_bgr else imgs).astype(np.float32)
            # Rows of W * C values: numpy's inner loop then runs long, not over C (~5x faster).
            width = out.shape[-2]
            rows = out.reshape(-1, width * out.shape[-1])
            rows -= np.tile(self.mean, width)
            # OpenCV multiplies float32 by the float64 scalar 1 / std in double precision.
            np.multiply(rows, np.tile(self._std_inv, width), out=rows, casting='unsafe')
        elif modality == 'Flow':
            if len(imgs) % 2 or self.mean.shape != (2, ) or self.std.shape != (2, ):
                raise ValueError('Flow normalisation needs x/y frame pairs and 2 means/stds')
            out = np.stack([imgs[0::2], imgs[1::2]], axis=-1).astype(np.float32)
            out = (out - self.mean) / self.std
            if self.adjust_magnitude:
                out = out * results['scale_factor']
            cfg['adjust_magnitude'] = self.adjust_magnitude
        else:
            raise NotImplementedError(f'Normalize does not support modality {modality!r}')
        results['imgs'] = out
        results['img_norm_cfg'] = cfg
        return results


class FormatShape(_Transform):
    """Reshapes `imgs` to the model's layout, channels-last for JAX; sets `input_shape`.

    'NCHW' / 'NHWC' (2D models): [F, H, W, C], F = crops * clips * clip_len frames in
    MMAction2's order (crop-major, then clip, then frame). Flow stacks each clip's frames
    along the channels: [F / clip_len, H, W, clip_len * C].
    'NCTHW' / 'NTHWC' (3D models): [crops * clips, clip_len, H, W, C].
    `collapse` drops the leading axis when it is 1 (num_clips must be 1).
    """

    _formats = {'NCHW': 'NHWC', 'NHWC': 'NHWC', 'NCTHW': 'NTHWC', 'NTHWC': 'NTHWC'}

    def __init__(self, input_format: str, collapse: bool = False):
        if input_format not in self._formats:
            raise ValueError(f'The input format {input_format} is invalid; '
                             f'supported: {sorted(self._formats)}')
        self.input_format = input_format
        self.collapse = collapse

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        imgs = _imgs(results)
        if self.collapse and results['num_clips'] != 1:
            raise ValueError('FormatShape(collapse=True) needs num_clips == 1')
        if self._formats[self.input_format] == 'NTHWC':
            # Validates that the frames split into whole (crop, clip) groups.
            imgs = imgs.reshape((-1, results['num_clips'], results['clip_len']) + imgs.shape[1:])
            imgs = imgs.reshape((-1, ) + imgs.shape[2:])
        elif results.get('modality') == 'Flow':
            # channel index t * C + c, like MMAction2's (M, C, H, W) -> (M / T, T * C, H, W)
            frames = imgs.reshape((-1, results['clip_len']) + imgs.shape[1:])
            imgs = np.moveaxis(frames, 1, 3).reshape(frames.shape[:1] + imgs.shape[1:3] + (-1, ))
        if self.collapse:
            if imgs.shape[0] != 1:
                raise ValueError(f'FormatShape(collapse=True) got {imgs.shape[0]} views')
            imgs = imgs[0]
        results['imgs'] = imgs
        results['input_shape'] = imgs.shape
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_format='{self.input_format}')"


class PackActionInputs(_Transform):
    """Returns the arrays a batch needs: the model input and `label`.

    The input is `imgs` (or, failing that, `heatmap_imgs`, `keypoint`, `audios`), or the keys
    in `collect_keys` when given, as in MMAction2. `label`: an int becomes an np.int32 scalar;
    an array (multi-hot or multi-label) stays an array. `algorithm_keys` present in the results
    are packed too. `meta_keys` are accepted for config compatibility but not packed: the JAX
    batch holds arrays only.
    """

    _repr_keys = ('collect_keys', 'meta_keys')
    _input_keys = ('imgs', 'heatmap_imgs', 'keypoint', 'audios')

    def __init__(self, collect_keys: Sequence[str] | None = None,
                 meta_keys: Sequence[str] = ('img_shape', 'img_key', 'video_id', 'timestamp'),
                 algorithm_keys: Sequence[str] = ()):
        self.collect_keys = collect_keys
        self.meta_keys = meta_keys
        self.algorithm_keys = algorithm_keys

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        if self.collect_keys is not None:
            keys = list(self.collect_keys)
        else:
            keys = [k for k in self._input_keys if k in results][:1]
            if not keys:
                raise ValueError(f'PackActionInputs needs one of {self._input_keys} in the '
                                 f'results; got {sorted(results)}')
        keys += [k for k in self.algorithm_keys if k in results]
        packed: dict[str, Any] = {k: np.asarray(results[k]) for k in keys}
        if 'label' in results:
            label = results['label']
            packed['label'] = (np.int32(label) if isinstance(label, (int, np.integer))
                               else np.asarray(label))
        return packed


TRANSFORMS = {cls.__name__: cls for cls in (
    SampleFrames, DenseSampleFrames, Resize, RandomCrop, RandomResizedCrop, MultiScaleCrop,
    CenterCrop, ThreeCrop, TenCrop, Flip, Normalize, FormatShape, PackActionInputs)}
