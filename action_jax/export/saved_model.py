"""TensorFlow SavedModel export through jax2tf (native serialisation: one XlaCallModule op
holding the StableHLO, which TensorFlow Serving and TF runtimes execute directly)."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from action_jax.export.signature import INPUT_NAME, output_names, pure_predict, sample_shape

DEFAULT_PLATFORMS = ('cpu', 'cuda')
SIGNATURE = 'serving_default'
# Where the input spec is stored inside the SavedModel directory (TF's extras convention).
METADATA_FILE = os.path.join('assets.extra', 'action_jax.json')


def _variable_name(path) -> str:
    return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', ''))) for k in path
                    if not hasattr(k, 'name'))


def export_saved_model(model: nnx.Module, out: str | os.PathLike, input_shape: Sequence[int],
                       *, batch_size: int | None = None,
                       platforms: Sequence[str] = DEFAULT_PLATFORMS,
                       metadata: Mapping[str, str] | None = None) -> str:
    """Writes the model's test-mode prediction as a SavedModel directory; returns its path.

    Signature 'serving_default': {'input': float32 [N, *input_shape, 3]} -> {'scores':
    float32 [N, num_classes]} for recognizers; {'input': float32 [N, *input_shape]} -> the
    named outputs (`output_names(model)`) for localizers; N polymorphic when `batch_size` is
    None. The weights (and BMN's sampling mask) are TF variables; the computation is
    lowered for each of `platforms` ('cpu', 'cuda', 'tpu'). `metadata` is written to
    assets.extra/action_jax.json.
    """
    import tensorflow as tf
    from jax.experimental import jax2tf

    predict, weights = pure_predict(model)
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(weights)

    def flat_predict(leaves, x):
        return predict(jax.tree_util.tree_unflatten(treedef, leaves), x)

    shape = sample_shape(model, input_shape)
    poly = None if batch_size is not None else f'(b, {", ".join(map(str, shape))})'
    converted = jax2tf.convert(flat_predict, polymorphic_shapes=[None, poly],
                               with_gradient=False,
                               native_serialization_platforms=tuple(platforms))
    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(leaf), trainable=False, name=_variable_name(path))
                      for path, leaf in paths_and_leaves]
    spec = tf.TensorSpec((batch_size, *shape), tf.float32, name=INPUT_NAME)
    names = output_names(model)

    @tf.function(input_signature=[spec], autograph=False)
    def serve(x):
        return dict(zip(names, converted(module.weights, x)))

    module.serve = serve
    out = os.fspath(out)
    tf.saved_model.save(module, out, signatures={SIGNATURE: serve})
    if metadata:
        os.makedirs(os.path.join(out, 'assets.extra'), exist_ok=True)
        with open(os.path.join(out, METADATA_FILE), 'w') as f:
            json.dump(dict(metadata), f, indent=2)
    return out


def load_saved_model(path: str | os.PathLike
                     ) -> Callable[[np.ndarray], np.ndarray | dict[str, np.ndarray]]:
    """The exported SavedModel as a function of its input: a recognizer's normalised float32
    clips -> scores; a localizer's features -> its output array (PEM), or {name: array}
    where it has several (BMN, TEM)."""
    import tensorflow as tf

    path = os.fspath(path)
    loaded = tf.saved_model.load(path)
    names = sorted(loaded.signatures[SIGNATURE].structured_outputs)  # TF sorts them anyway
    if os.path.isfile(os.path.join(path, METADATA_FILE)):  # the export's order, as ONNX's
        with open(os.path.join(path, METADATA_FILE)) as f:
            order = json.load(f).get('outputs', '').split(',')
        names.sort(key=lambda name: order.index(name) if name in order else len(order))

    def run(x: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        # Looked up through `loaded`, which the signature needs alive.
        signature = loaded.signatures[SIGNATURE]
        outputs = signature(**{INPUT_NAME: tf.constant(x, tf.float32)})
        if len(names) == 1:
            return outputs[names[0]].numpy()
        return {name: outputs[name].numpy() for name in names}

    return run
