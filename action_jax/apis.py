"""MMAction2's inference API: `init_recognizer` and `inference_recognizer`.

    model = init_recognizer('configs/tsn_k400.py', 'tsn_r50.pth')   # or an action_jax workdir
    inference_recognizer(model, 'demo.mp4')   # [(label_index, score), ...] top-5, best first

The video may be a video file, a rawframes directory (img_00001.jpg, ...) or an http(s) URL.
The config's `test_dataloader.dataset.pipeline` is the inference pipeline, as in MMAction2;
its decoding steps are swapped to suit the input (frame files for a directory, a video reader
for a file), so one config serves both kinds of input.
"""
from __future__ import annotations

import contextlib
import os
import re
import string
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from action_jax import config_path, user_errors
from action_jax.config import FrozenConfig, as_dict, compute_dtype
from action_jax.data.readers import VideoDecodeError
from action_jax.data.pipeline import Compose
from action_jax.export import cpu_inference
from action_jax.models.compiled import compile_on_call
from action_jax.models.fuse import fuse_conv_bn
from action_jax.models.io import build_recognizer, load_weights
from action_jax.models.recognizers import Recognizer2D
from action_jax.registry import import_custom_modules

DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 2**20
DEFAULT_DOWNLOAD_TIMEOUT_S = 60.0
TOP_K = 5
RUNTIMES = ('auto', 'xla', 'onnxruntime')

_VIDEO_INIT = dict(type='DecordInit')
_VIDEO_DECODE = dict(type='DecordDecode')
_FRAME_DECODE = dict(type='RawFrameDecode')


class DownloadError(RuntimeError):
    """A video URL could not be fetched (HTTP error, timeout, body over the size limit)."""


def load_config(config: str | os.PathLike | Mapping) -> ConfigDict:
    """A config from a file with `get_config()` ('path.py', or 'path.py:arg' to pass `arg`
    as ml_collections' config flags do), or a ConfigDict/dict as is; its `custom_imports`
    imported."""
    config = _read_config(config)
    import_custom_modules(config)
    return config


def _read_config(config: str | os.PathLike | Mapping) -> ConfigDict:
    if isinstance(config, ConfigDict):
        return config
    if isinstance(config, Mapping):
        return ConfigDict(config)
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(f'config must be a file name or a ConfigDict, got {type(config)}')
    return config_path.load(config)


def _resolve_device(device: jax.Device | str | None) -> jax.Device | None:
    """None, a jax.Device, or a name: 'cpu', 'gpu', 'cuda:1', 'tpu:0' (MMAction2 style)."""
    if device is None or isinstance(device, jax.Device):
        return device
    platform, _, index = str(device).partition(':')
    platform = {'cuda': 'gpu'}.get(platform, platform)
    try:
        return jax.devices(platform)[int(index or 0)]
    except (RuntimeError, IndexError) as e:
        raise user_errors.NoDeviceError(device) from e


def init_recognizer(config: str | os.PathLike | Mapping, checkpoint: str | None = None,
                    device: jax.Device | str | None = None, *, fuse: bool = True,
                    runtime: str = 'auto') -> nnx.Module:
    """The recognizer of `config` in eval mode, with `checkpoint`'s weights and the config
    attached as `model.cfg`.

    `checkpoint`: an MMAction2 `.pth`, or an action_jax checkpoint (step directory,
    `checkpoints/` directory or workdir); None keeps the random initialisation. Loaded as
    `load_from` is: a tensor of another shape (a head for other classes) keeps its
    initialisation with a warning; names must match unless `config.load_from_strict=False`.
    `device`: where the weights live (a jax.Device or a name such as 'cpu' or 'cuda:0');
    None is JAX's default device.
    `fuse`: fold every BatchNorm into its conv, and on CPU compute 3D convs as 2D ones
    (`models/fuse.py`: same outputs within ~2e-6 relative; I3D 2.8x faster on CPU). The
    fused model is for inference only; `fuse=False` keeps the trainable layout.
    The model compiles itself (`models/compiled.py`): `model(x)`, `model.predict(batch)` and
    `model.predict_scores(x)` are jit-compiled on their first call per input shape (with the
    backbone on onnxruntime, the rest runs as the model's own code around it).
    `runtime`: where a recognizer's backbone runs. 'auto' (default): a 2D recognizer's (TSN,
    TSM) on onnxruntime when the weights live on the CPU and the `export` extra is
    installed, else on XLA; 'onnxruntime': on onnxruntime (any float32 recognizer whose
    extract_feat is BaseRecognizer's, else ValueError); 'xla': on XLA.
    onnxruntime ran TSN-R50 and TSM-R50 1.2-1.6x faster than XLA:CPU, I3D slower
    (`export/cpu_inference.py`); its first call per input shape exports the backbone (~5 s
    for a ResNet-50), kept in ~/.cache/action_jax for later processes.
    """
    config = load_config(config)
    model_cfg = as_dict(config.model)
    if checkpoint is not None and model_cfg.get('backbone', {}).get('pretrained'):
        # The checkpoint replaces the backbone's ImageNet weights anyway (as in MMAction2).
        model_cfg['backbone'] = dict(model_cfg['backbone'], pretrained=None)
    model = build_recognizer(model_cfg, seed=config.get('seed', 0),
                             dtype=compute_dtype(config))
    if checkpoint is not None:
        load_weights(model, checkpoint, strict=config.get('load_from_strict', True))
    model.eval()
    device = _resolve_device(device)
    if fuse:
        model = fuse_conv_bn(model, conv3d_as_2d=None if device is None
                             else device.platform == 'cpu')
    if device is not None:
        nnx.update(model, jax.device_put(nnx.state(model), device))
    model.cfg = FrozenConfig(config)
    return with_runtime(compile_on_call(model), runtime, device)


def with_runtime(model: nnx.Module, runtime: str = 'auto',
                 device: jax.Device | None = None) -> nnx.Module:
    """init_recognizer's choice of `runtime` for a compiled model whose weights live on
    `device` (None: JAX's default device)."""
    if runtime not in RUNTIMES:
        raise ValueError(f'runtime must be one of {", ".join(RUNTIMES)}, got {runtime!r}')
    # 2D recognizers only: for I3D XLA was the faster (0.30 s against onnxruntime's 0.33).
    if runtime == 'auto' and not (isinstance(model, Recognizer2D)
                                  and (device or jax.devices()[0]).platform == 'cpu'
                                  and cpu_inference.available()
                                  and cpu_inference.unsupported(model) is None):
        return model
    if runtime != 'xla':
        if not cpu_inference.available():
            raise ImportError('runtime onnxruntime needs jax2onnx and onnxruntime: '
                              'pip install "action_jax[export]"')
        model = cpu_inference.backbone_on_onnxruntime(model)
    return model


# ------------------------------------------------------------------------ inputs

def is_url(video: Any) -> bool:
    """Whether `video` is an http(s) URL (fetched rather than opened)."""
    return isinstance(video, str) and video.startswith(('http://', 'https://'))


@contextlib.contextmanager
def downloaded(url: str, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
               timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_S) -> Iterator[str]:
    """Fetches `url` into a temporary file, yields its path and removes it afterwards.

    Raises DownloadError for an HTTP error status, a network error, more than `timeout`
    seconds in all, or a body over `max_bytes`.
    """
    # The extension only hints the container to the decoder; mkstemp fails (a raw OSError) on
    # a long one, so anything but a short plain one becomes '.mp4'.
    suffix = os.path.splitext(urllib.parse.urlparse(url).path)[1]
    if not re.fullmatch(r'\.[A-Za-z0-9]{1,10}', suffix):
        suffix = '.mp4'
    fd, path = tempfile.mkstemp(prefix='action_jax_', suffix=suffix)
    try:
        with os.fdopen(fd, 'wb') as out:
            _fetch(url, out, max_bytes, timeout)
        yield path
    finally:
        os.remove(path)


def _fetch(url: str, out, max_bytes: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def time_left() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            declared = response.headers.get('Content-Length')
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadError(f'cannot download {url}: {int(declared)} bytes exceed the '
                                    f'limit of {max_bytes} bytes (max_download_bytes)')
            # A socket timeout bounds each read, not the download: a server sending a byte
            # now and then would never time out. So each read may wait only the time left,
            # and read1 returns whatever has arrived instead of waiting to fill the chunk.
            sock = response.fp.raw._sock
            received = 0
            while True:
                sock.settimeout(time_left())
                chunk = response.read1(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f'cannot download {url}: the body exceeds the limit '
                                        f'of {max_bytes} bytes (max_download_bytes)')
                out.write(chunk)
    except urllib.error.HTTPError as e:
        raise DownloadError(f'cannot download {url}: HTTP {e.code} {e.reason}') from e
    except urllib.error.URLError as e:
        raise DownloadError(f'cannot download {url}: {e.reason}') from e
    except TimeoutError as e:
        raise DownloadError(f'cannot download {url}: timed out after {timeout} s') from e
    if received == 0:
        raise DownloadError(f'cannot download {url}: the response body is empty')


def frame_count(frame_dir: str, filename_tmpl: str = 'img_{:05}.jpg',
                modality: str = 'RGB') -> int:
    """Number of files in `frame_dir` named by `filename_tmpl` (the x frames for Flow)."""
    pattern = ''
    fields = 0
    for literal, field, _, _ in string.Formatter().parse(filename_tmpl):
        pattern += re.escape(literal)
        if field is None:
            continue
        # Flow templates ('{}_{:05d}.jpg') name the direction first; count the x frames.
        pattern += 'x' if modality == 'Flow' and fields == 0 else r'\d+'
        fields += 1
    regex = re.compile(pattern)
    return sum(1 for name in os.listdir(frame_dir) if regex.fullmatch(name))


def _step_type(step: Mapping) -> str:
    return str(step.get('type', ''))


def adapt_pipeline(pipeline: Sequence[Mapping], kind: str) -> list[dict]:
    """The test pipeline with its decoding steps suited to `kind` ('video' or 'rawframes').

    rawframes: Init steps dropped, video Decode steps become RawFrameDecode. video: a
    pipeline without an Init step (a rawframes pipeline) gets DecordInit/DecordDecode.
    """
    steps = [dict(step) for step in pipeline]
    has_init = any('Init' in _step_type(s) for s in steps)
    if kind == 'rawframes':
        return [s if _step_type(s) == 'RawFrameDecode'
                else dict(_FRAME_DECODE) if 'Decode' in _step_type(s) else s
                for s in steps if 'Init' not in _step_type(s)]
    if has_init:
        return steps
    return [dict(_VIDEO_INIT)] + [dict(_VIDEO_DECODE) if 'Decode' in _step_type(s) else s
                                  for s in steps]


def _results_for(video: str, kind: str, dataset_cfg: Mapping) -> dict:
    """The pipeline's input dict, as MMAction2's inference_recognizer builds it."""
    if kind == 'video':
        return dict(filename=video, label=-1, start_index=0, modality='RGB')
    rawframes_cfg = dataset_cfg if dataset_cfg.get('type') == 'RawframeDataset' else {}
    tmpl = rawframes_cfg.get('filename_tmpl', 'img_{:05}.jpg')
    modality = dataset_cfg.get('modality', 'RGB')
    total = frame_count(video, tmpl, modality)
    if total == 0:
        raise VideoDecodeError(video, f'no frame files named like {tmpl!r}')
    return dict(frame_dir=video, total_frames=total, label=-1,
                start_index=rawframes_cfg.get('start_index', 1), filename_tmpl=tmpl,
                modality=modality, offset=0)


def _input_kind(video: str) -> str:
    if os.path.isdir(video):
        return 'rawframes'
    if os.path.isfile(video):
        return 'video'
    raise FileNotFoundError(f'{video!r} is neither a video file, a rawframes directory nor an '
                            'http(s) URL')


def load_clips(model: nnx.Module, video: str | os.PathLike | dict,
               test_pipeline: Sequence[Mapping] | None = None) -> np.ndarray:
    """The test pipeline's output for one video: uint8 clips ([F, H, W, C] for 2D models,
    [views, T, H, W, C] for 3D ones). `video`: a local file, a rawframes directory or a
    pipeline input dict (MMAction2's 'dict' input)."""
    dataset_cfg = as_dict(model.cfg.test_dataloader.dataset)
    pipeline = test_pipeline if test_pipeline is not None else dataset_cfg['pipeline']
    if isinstance(video, Mapping):
        results = dict(video)
    else:
        video = os.fspath(video)
        kind = _input_kind(video)
        pipeline = adapt_pipeline(pipeline, kind)
        results = _results_for(video, kind, dataset_cfg)
    return np.asarray(Compose(pipeline)(results)['imgs'])


def predict_scores(model: nnx.Module, clips: np.ndarray) -> np.ndarray:
    """Per-video class scores [K] for one video's uint8 clips (views averaged when the
    head's average_clips is None). A model not from init_recognizer is made to compile
    itself first (`compile_on_call`, in place)."""
    scores = np.asarray(compile_on_call(model).predict({'imgs': clips[None]}))[0]
    return scores.mean(axis=0) if scores.ndim == 2 else scores


def top_k(scores: np.ndarray, k: int = TOP_K) -> list[tuple[int, float]]:
    """[(label_index, score), ...] of the k best classes, best first."""
    order = np.argsort(-scores, kind='stable')[:k]
    return [(int(i), float(scores[i])) for i in order]


def inference_recognizer(model: nnx.Module, video: str | os.PathLike | dict,
                         test_pipeline: Sequence[Mapping] | None = None, *,
                         max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
                         timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_S
                         ) -> list[tuple[int, float]]:
    """Recognises one video: the top-5 [(label_index, score), ...], best first.

    `video`: a video file, a rawframes directory, an http(s) URL (downloaded to a temporary
    file, at most `max_download_bytes` within `timeout` seconds, removed afterwards) or a
    pipeline input dict. `test_pipeline` (a list of transform dicts) replaces the config's.
    Raises DownloadError and VideoDecodeError (which names the file or URL).
    """
    if not hasattr(model, 'cfg'):
        raise ValueError('the model has no config attached: build it with init_recognizer')
    if is_url(video):
        with downloaded(video, max_download_bytes, timeout) as path:
            try:
                clips = load_clips(model, path, test_pipeline)
            except VideoDecodeError as e:
                raise VideoDecodeError(video, f'not a decodable video ({e.reason})') from e
    else:
        clips = load_clips(model, video, test_pipeline)
    return top_k(predict_scores(model, clips))


def init_localizer(config: str | os.PathLike | Mapping, checkpoint: str | None = None,
                   device: jax.Device | str | None = None) -> nnx.Module:
    """`init_recognizer`'s twin for BMN, TEM and PEM (same checkpoints and devices).

    `model(x)` on features [N, T, C] (PEM: [N, proposals, C]) returns the pre-sigmoid outputs,
    `model.predict(batch)` the sigmoid ones.
    """
    return init_recognizer(config, checkpoint, device, fuse=False)  # BMN/BSN: no ConvModules
