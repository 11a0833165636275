"""ONNX exports cached on disk: a recognizer's (here) and a backbone's (cpu_inference.py).

    run = cached_onnx_model(model, (8, 224, 224))   # exports once, then reuses the file
    scores = run(x)                                  # as model.predict_scores(x)

Exporting a ResNet-50 takes half a minute to minutes; the file is kept under
`$ACTION_JAX_CACHE` (default ~/.cache/action_jax)/onnx/, named by a hash of the model's
structure and config (its graph definition), every weight, the input shape, the opset and
the JAX and jax2onnx versions: a changed weight or config gives a new file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata

import jax
import numpy as np
from flax import nnx

from action_jax.export.signature import prepare_for_export
from action_jax.export.onnx import DEFAULT_OPSET, export_onnx
from action_jax.export.runtime import OnnxModel


def cache_dir() -> str:
    return os.path.join(os.environ.get('ACTION_JAX_CACHE',
                                       os.path.expanduser('~/.cache/action_jax')), 'onnx')


def fingerprint(module: nnx.Module, input_shape: Sequence[int],
                opset: int = DEFAULT_OPSET, kind: str = 'model') -> str:
    """sha256 of everything the exported file depends on (`kind`: what is exported)."""
    digest = hashlib.sha256(repr(nnx.graphdef(module)).encode())
    digest.update(repr((kind, tuple(input_shape), opset, jax.__version__,
                        metadata.version('jax2onnx'))).encode())
    # Rng streams do not reach the exported (test-mode) function.
    weights = nnx.state(module, nnx.Not(nnx.RngState))
    for path, value in sorted(nnx.to_flat_state(weights), key=lambda kv: str(kv[0])):
        array = np.asarray(value.get_value())
        digest.update(f'{path}{array.dtype}{array.shape}'.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cached_file(name: str, write: Callable[[str], object]) -> str:
    """The path of `name` in the cache, written by `write(path)` now if the cache lacks it."""
    path = os.path.join(cache_dir(), name)
    if not os.path.exists(path):
        os.makedirs(cache_dir(), exist_ok=True)
        # Write to a temporary name first: concurrent processes never read half a file.
        fd, partial = tempfile.mkstemp(suffix='.partial', dir=cache_dir())
        os.close(fd)
        try:
            write(partial)
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return path


def cached_onnx(model: nnx.Module, input_shape: Sequence[int],
                opset: int = DEFAULT_OPSET) -> str:
    """The path of `model`'s ONNX export (dynamic batch) for per-video `input_shape`
    (F, H, W or V, T, H, W), exported now if the cache lacks it."""
    return cached_file(
        f'{fingerprint(model, input_shape, opset)}.onnx',
        lambda out: export_onnx(prepare_for_export(nnx.clone(model)), out, input_shape,
                                opset=opset))


def cached_onnx_model(model: nnx.Module, input_shape: Sequence[int],
                      opset: int = DEFAULT_OPSET) -> OnnxModel:
    """`model.predict_scores` for input [N, *input_shape, 3] on onnxruntime's CPU provider."""
    return OnnxModel(cached_onnx(model, input_shape, opset),
                     providers=['CPUExecutionProvider'])
