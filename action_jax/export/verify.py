"""Checking an exported model against the JAX model it came from."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from action_jax.export.signature import output_names, pure_predict, sample_shape
from action_jax.progress import track

RELATIVE_TOLERANCE = 1e-4


def max_relative_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    """max |outputs - reference| / max |reference| (0 for an all-zero reference)."""
    outputs, reference = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    if outputs.shape != reference.shape:
        raise ValueError(f'output shape {outputs.shape} != reference {reference.shape}')
    scale = np.abs(reference).max()
    return float(np.abs(outputs - reference).max() / scale) if scale else \
        float(np.abs(outputs).max())


def as_outputs(result: Any, names: Sequence[str]) -> tuple[np.ndarray, ...]:
    """An exported model's result (one array, a {name: array} dict or a sequence) as a
    tuple in `names` order."""
    if isinstance(result, Mapping):
        missing = [name for name in names if name not in result]
        if missing:
            raise ValueError(f'the exported model returned {sorted(result)}, not {missing}')
        return tuple(result[name] for name in names)
    outputs = (result,) if len(names) == 1 and not isinstance(result, (tuple, list)) \
        else tuple(result)
    if len(outputs) != len(names):
        raise ValueError(f'the exported model returned {len(outputs)} outputs, not '
                         f'{len(names)} ({", ".join(names)})')
    return outputs


def verify_outputs(run: Callable[[np.ndarray], Any], model: nnx.Module,
                   input_shape: Sequence[int], batch_sizes: Sequence[int],
                   seed: int = 0) -> dict[str, float]:
    """Runs the exported model (`run`: the array, or {name: array} for several outputs) and
    the JAX model on the same random inputs; returns each output's largest relative error,
    raising if one exceeds RELATIVE_TOLERANCE."""
    predict, weights = pure_predict(model)
    predict = jax.jit(predict)
    names = output_names(model)
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(names, 0.0)
    for batch in track(batch_sizes, 'Verifying the export'):
        x = rng.standard_normal((batch, *sample_shape(model, input_shape)), dtype=np.float32)
        for name, out, ref in zip(names, as_outputs(run(x), names), predict(weights, x)):
            error = max_relative_error(out, ref)
            if error > RELATIVE_TOLERANCE:
                which = f' in output {name!r}' if len(names) > 1 else ''
                raise RuntimeError(f'the exported model differs from the JAX model at batch '
                                   f'size {batch}{which}: relative error {error:.2e} > '
                                   f'{RELATIVE_TOLERANCE}')
            worst[name] = max(worst[name], error)
    return worst


def verify(run: Callable[[np.ndarray], Any], model: nnx.Module,
           input_shape: Sequence[int], batch_sizes: Sequence[int], seed: int = 0) -> float:
    """verify_outputs' largest error over all outputs."""
    return max(verify_outputs(run, model, input_shape, batch_sizes, seed).values())
