"""Running exported models: a recognizer's normalised float32 clips in, per-video scores
out; a localizer's features in, its outputs out.

    scores = OnnxModel('tsn.onnx')(x)           # onnxruntime (CPU, or CUDA if installed)
    scores = TensorRTModel('tsn.engine')(x)     # TensorRT engine built from the ONNX file
    out = OnnxModel('bmn.onnx')(features)      # {'confidence_map': ..., 'start': ..., 'end': ...}

x is what the model's data_preprocessor produces (see action_jax.export): float32
[N, F, H, W, 3] (2D models) or [N, V, T, H, W, 3] (3D models); for localizers, features
[N, T, C] (BMN, TEM) or [N, P, C] (PEM). A model with one output (recognizers, PEM) returns
that array, one with several (BMN, TEM) a {name: array} dict (BMN's is
`BMNOutput(**out)`). A model exported with a fixed batch size accepts any N: the input is
run in batches of that size (the last padded).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np


def _check_input(x: np.ndarray, expected: Sequence[int | None], what: str) -> np.ndarray:
    """float32, C-contiguous `x` of the expected rank and fixed dims (None/-1: any)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    fixed = [d if isinstance(d, int) and d > 0 else None for d in expected]
    if x.ndim != len(fixed) or any(d is not None and d != s
                                   for d, s in zip(fixed[1:], x.shape[1:])):
        layout = ', '.join('?' if d is None else str(d) for d in fixed)
        raise ValueError(f'{what} expects input of shape [{layout}], got {list(x.shape)}')
    return x


def _fixed_batch(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _in_batches(run: Callable[[np.ndarray], dict[str, np.ndarray]], x: np.ndarray,
                batch: int | None) -> dict[str, np.ndarray]:
    """run(x) ({output name: array}), feeding a fixed-batch model `batch` rows at a time
    (zero-padding the last)."""
    if batch is None or len(x) == batch:
        return run(x)
    n = len(x)
    padded = np.concatenate([x, np.zeros((-n % batch, *x.shape[1:]), x.dtype)])
    parts = [run(padded[i:i + batch]) for i in range(0, len(padded), batch)]
    return {name: np.concatenate([part[name] for part in parts])[:n] for name in parts[0]}


def _result(outputs: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    """The one output's array, or all outputs by name."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


class OnnxModel:
    """An exported .onnx recognizer or localizer on onnxruntime.

    `providers`: onnxruntime execution providers, by default all available ones (CUDA
    first where onnxruntime-gpu is installed). `metadata` holds the input spec the export
    stored (layout; recognizers: mean, std, average_clips; localizers: the outputs).
    `output_names`: the outputs in graph order.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None):
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError('OnnxModel needs the `onnxruntime` package '
                              '(pip install onnxruntime, or onnxruntime-gpu)') from e
        self.path = os.fspath(path)
        self.session = onnxruntime.InferenceSession(
            self.path, providers=list(providers or onnxruntime.get_available_providers()))
        (model_input,) = self.session.get_inputs()
        self.input_name, self.input_shape = model_input.name, list(model_input.shape)
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names,
                        self.session.run(self.output_names, {self.input_name: x})))

    def __call__(self, x: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        x = _check_input(x, self.input_shape, self.path)
        return _result(_in_batches(self._run, x, _fixed_batch(self.input_shape[0])))


def _cuda_runtime():
    """cuda-python's runtime module (its location moved in cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _cuda_call(result):
    """cuda-python returns (error, *values): raise on error, return the values."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f'CUDA error {error}')
    return values[0] if len(values) == 1 else values


class TensorRTModel:
    """A serialised TensorRT engine (TensorRT 10 API), e.g. built from the exported ONNX
    file with `trtexec --onnx=tsn.onnx --saveEngine=tsn.engine` (add
    `--minShapes/--optShapes/--maxShapes=input:NxFxHxWx3`, localizers `input:NxTxC`, for a
    dynamic batch). Outputs as OnnxModel's.

    Needs the `tensorrt` and `cuda-python` packages and an NVIDIA GPU.
    """

    def __init__(self, engine_path: str | os.PathLike):
        try:
            import tensorrt as trt
        except ImportError as e:
            raise ImportError('TensorRTModel needs the `tensorrt` package (pip install '
                              'tensorrt) and an NVIDIA GPU; OnnxModel runs the .onnx '
                              'file without it') from e
        try:
            self._cudart = _cuda_runtime()
        except ImportError as e:
            raise ImportError('TensorRTModel needs the `cuda-python` package for GPU '
                              'buffers (pip install cuda-python)') from e
        self.path = os.fspath(engine_path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        with open(self.path, 'rb') as f:
            self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f'{self.path} is not a TensorRT engine for this TensorRT/GPU')
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names
                  if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ValueError(f'{self.path}: expected one input and an output, got {names}')
        self.input_name, self.output_names = inputs[0], outputs
        self.input_shape = list(self.engine.get_tensor_shape(self.input_name))
        self._stream = _cuda_call(self._cudart.cudaStreamCreate())

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        self.context.set_input_shape(self.input_name, x.shape)
        outs = {name: np.empty(tuple(self.context.get_tensor_shape(name)), np.float32)
                for name in self.output_names}
        kinds = cudart.cudaMemcpyKind
        buffers = []
        try:
            for name, array in ((self.input_name, x), *outs.items()):
                buffers.append(_cuda_call(cudart.cudaMalloc(array.nbytes)))
                self.context.set_tensor_address(name, int(buffers[-1]))
            _cuda_call(cudart.cudaMemcpyAsync(buffers[0], x.ctypes.data, x.nbytes,
                                              kinds.cudaMemcpyHostToDevice, self._stream))
            if not self.context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f'{self.path}: TensorRT execution failed')
            for out, src in zip(outs.values(), buffers[1:]):
                _cuda_call(cudart.cudaMemcpyAsync(out.ctypes.data, src, out.nbytes,
                                                  kinds.cudaMemcpyDeviceToHost, self._stream))
            _cuda_call(cudart.cudaStreamSynchronize(self._stream))
        finally:
            for buffer in buffers:
                cudart.cudaFree(buffer)
        return outs

    def __call__(self, x: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        x = _check_input(x, self.input_shape, self.path)
        return _result(_in_batches(self._run, x, _fixed_batch(self.input_shape[0])))
