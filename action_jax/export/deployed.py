"""Scoring a deployed model: `--mode test --config.onnx=model.onnx` (onnxruntime) or
`--config.tensorrt=model.engine` runs the exported recognizer on test mode's batches, so it is
scored with the same data, metrics and result files as the JAX model.

`main.py` hands `deployed_eval_step(config)` to the test loop in place of its jitted step.
"""
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from action_jax.config import as_dict
from action_jax.models.localizers import LOCALIZERS
from action_jax.models.preprocessor import ActionDataPreprocessor

EvalStep = Callable[[Any, Any, Any, Mapping[str, np.ndarray]], np.ndarray]


def deployed_eval_step(config) -> EvalStep | None:
    """An eval step `(graphdef, params, rest, batch) -> scores` that runs the config's
    exported recognizer (`onnx` or `tensorrt`) on the preprocessed clips; None when the
    config names neither."""
    if not (config.onnx or config.tensorrt):
        return None
    model_cfg = as_dict(config.model)
    if model_cfg.get('type') in LOCALIZERS:
        raise ValueError('--config.onnx / --config.tensorrt test recognizers; run exported '
                         'localizers with action_jax.export.runtime.OnnxModel')
    from action_jax.export.runtime import OnnxModel, TensorRTModel
    runtime = OnnxModel(config.onnx) if config.onnx else TensorRTModel(config.tensorrt)
    preprocess = ActionDataPreprocessor(**model_cfg.get('data_preprocessor', {}),
                                        dtype=jnp.float32)

    def step(graphdef, params, rest, batch):
        return runtime(np.asarray(preprocess(batch['imgs'])))
    return step
