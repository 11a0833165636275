"""ONNX export through jax2onnx (the package docstring says why not jax2tf + tf2onnx)."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

from flax import nnx

from action_jax.export.signature import INPUT_NAME, output_names, pure_predict, sample_shape

# TensorRT 8.6 and later parse opset 17; newer opsets are there for other runtimes.
DEFAULT_OPSET = 17
# The dynamic batch dimension's name in the graph.
BATCH_DIM = 'N'


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Silences jax2onnx's harmless noise: DeprecationWarnings (it reads flax Variables
    through `.value`) and onnx_ir's notes on untyped shape values, which only concern the
    value_info annotations dropped below."""
    serde = logging.getLogger('onnx_ir.serde')
    level = serde.level
    serde.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            yield
    finally:
        serde.setLevel(level)


def export_onnx(model: nnx.Module, out: str | os.PathLike, input_shape: Sequence[int], *,
                batch_size: int | None = None, opset: int = DEFAULT_OPSET,
                metadata: Mapping[str, str] | None = None) -> str:
    """Writes the model's test-mode prediction to an ONNX file and returns its path.

    Input 'input' float32 [N, *input_shape, 3] for recognizers, [N, *input_shape] for
    localizers (N dynamic when `batch_size` is None); outputs as `output_names(model)` says:
    'scores' float32 [N, num_classes] for recognizers, the named outputs of its export_spec for
    localizers. `metadata` goes to the model's metadata_props. The file passes onnx.checker
    (full check).
    """
    predict, weights = pure_predict(model)
    batch = BATCH_DIM if batch_size is None else batch_size
    return save_onnx(functools.partial(predict, weights),
                     (batch, *sample_shape(model, input_shape)), out,
                     model_name=type(model).__name__, output_names=output_names(model),
                     opset=opset, metadata=metadata)


def save_onnx(fn: Callable, input_shape: Sequence[int | str], out: str | os.PathLike, *,
              model_name: str, output_names: Sequence[str], opset: int = DEFAULT_OPSET,
              metadata: Mapping[str, str] | None = None) -> str:
    """Converts `fn` (float32 'input' of `input_shape`, a str dim dynamic -> its outputs) to
    an ONNX file that passes onnx.checker; returns its path."""
    import onnx
    from jax2onnx import to_onnx

    with _quiet_converter():
        proto = to_onnx(fn, inputs=[tuple(input_shape)], model_name=model_name, opset=opset,
                        input_names=[INPUT_NAME], output_names=list(output_names))
    # jax2onnx annotates some intermediate values with their JAX (NHWC) shapes where the graph
    # holds them transposed (NCHW); the annotations are optional, and without them the
    # checker's and runtimes' own shape inference is consistent.
    del proto.graph.value_info[:]
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx.save(proto, out)
    return out
