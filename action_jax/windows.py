"""A recognizer over a long video in fixed temporal windows: the common part of
`tools/extract_features` (backbone features per window, for BMN/BSN) and `demo_long`
(class scores per window).

    frames = read_frames('long.mp4')                 # [n, H, W, 3] uint8
    starts = window_starts(len(frames), 16, 8)       # first frame of each window
    clips = window_clips(model, frames, starts, 16)  # test-pipeline clips, one per window
    feats = window_features(model, clips)            # [windows, C]: pooled, before the fc

A window's frames go through the config's test pipeline without its decoding and sampling
steps (as MMAction2's demo/long_video_demo.py), so they are resized and cropped as the model
was tested.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flax import nnx

from action_jax.config import as_dict
from action_jax.data.pipeline import Compose
from action_jax.models.compiled import compile_on_call

# Steps that read frames from a file or choose them; the windows provide the frames instead.
_FRAME_SOURCE_STEPS = ('Init', 'Decode', 'SampleFrames', 'FrameSelector')


CHECKPOINT_HELP = "MMAction2 .pth or action_jax checkpoint/workdir; 'none': random weights"


def checkpoint_or_none(value: str) -> str | None:
    """A CHECKPOINT argument: 'none' (any case) keeps the random initialisation."""
    return None if value.lower() == 'none' else value


def window_starts(num_frames: int, window: int, stride: int,
                  cover_tail: bool = False) -> np.ndarray:
    """First frame of each window: every `stride` frames while a whole window fits (one
    window, padded by `window_indices`, for a video shorter than a window). `cover_tail`
    adds one ending at the last frame when the stride skips the tail (the grid is then no
    longer even, which features for a localizer must be)."""
    if window < 1 or stride < 1:
        raise ValueError(f'window ({window}) and stride ({stride}) must be positive')
    starts = list(range(0, max(num_frames - window, 0) + 1, stride))
    if cover_tail and starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return np.asarray(starts)


def window_indices(start: int, window: int, num_frames: int, samples: int) -> np.ndarray:
    """`samples` frame indices spread evenly over [start, start + window), the window cut
    at the last frame (a short video repeats its frames)."""
    end = min(start + window, num_frames)
    return np.linspace(start, end - 1, samples).round().astype(int)


def sample_shape(model: nnx.Module) -> tuple[int, int]:
    """(clip_len, num_clips) of the test pipeline's SampleFrames step (1, 1 without one)."""
    for step in as_dict(model.cfg.test_dataloader.dataset)['pipeline']:
        if 'SampleFrames' in str(step.get('type', '')):
            return int(step.get('clip_len', 1)), int(step.get('num_clips', 1))
    return 1, 1


def frame_pipeline(model: nnx.Module) -> Compose:
    """The test pipeline without the steps that decode or sample frames."""
    pipeline = as_dict(model.cfg.test_dataloader.dataset)['pipeline']
    return Compose([dict(step) for step in pipeline
                    if not any(s in str(step.get('type', '')) for s in _FRAME_SOURCE_STEPS)])


def window_clips(model: nnx.Module, frames: np.ndarray, starts: Sequence[int], window: int,
                 samples: int | None = None, pipeline: Compose | None = None) -> np.ndarray:
    """The model's uint8 input for each window, stacked: [windows, ...] (one video each).

    `samples` frames are taken evenly from each window (default: all `window` frames); for
    a 3D model they form one clip of that length, unless the config samples several clips
    and `samples` is clip_len x num_clips.
    """
    samples = samples or window
    clip_len, num_clips = sample_shape(model)
    if clip_len * num_clips != samples:
        clip_len, num_clips = samples, 1
    pipeline = pipeline or frame_pipeline(model)
    clips = []
    for start in starts:
        imgs = frames[window_indices(int(start), window, len(frames), samples)]
        results = dict(imgs=imgs, img_shape=imgs.shape[1:3], original_shape=imgs.shape[1:3],
                        clip_len=clip_len, num_clips=num_clips, frame_interval=1,
                        modality='RGB', start_index=0, label=-1)
        clips.append(np.asarray(pipeline(results)['imgs']))
    return np.stack(clips)


def check_window(model: nnx.Module, frames_per_window: int) -> None:
    """TSM shifts channels between the frames of groups of num_segments: a window must hold
    whole groups."""
    segments = getattr(model.backbone, 'num_segments', None)
    if segments and frames_per_window % segments:
        raise ValueError(f'the backbone (TSM) works on groups of num_segments={segments} '
                         f'frames; a window of {frames_per_window} frames is not a multiple')


def window_features(model: nnx.Module, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """The backbone's average-pooled features of each window's clips [N, ...] -> [N, C]
    float32, `batch_size` windows per call (the last batch padded: one compiled shape)."""
    model = compile_on_call(model)
    out = []
    for i in range(0, len(clips), batch_size):
        batch = clips[i:i + batch_size]
        padded = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), 0)])
        out.append(np.asarray(model.pooled_features({'imgs': padded}))[:len(batch)])
    return np.concatenate(out)


def check_label_map(model: nnx.Module, labels: Sequence[str], label_file: str) -> None:
    """Raises ValueError unless the label map names every class of the model's head."""
    num_classes = model.cls_head.num_classes
    if len(labels) < num_classes:
        raise ValueError(f'the label map {label_file!r} names {len(labels)} classes; the '
                         f'model has {num_classes}')
