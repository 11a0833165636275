"""Building a model (recognizer or localizer) from its config, and filling it with weights:
the backbone's `pretrained` file, an MMAction2 `.pth` or an action_jax (orbax) checkpoint.

Every source is loaded by the same policy (:func:`check_fit`), MMAction2's non-strict
`load_checkpoint` with names checked: a tensor whose shape differs from the model's (the new
head after `num_classes` changed) keeps its initialisation and is named in one warning;
missing or unexpected names are an error unless `strict=False` (`load_from_strict`).

Weight converters (action_jax.convert, torch) are imported only when a `.pth` is read.
"""
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from action_jax.config import as_dict
from action_jax.models.builder import build_model
from action_jax.user_errors import UserError

logger = logging.getLogger(__name__)


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read safely, or does not fit the model (a one-line error
    in the CLIs)."""


def _some(names: Sequence[str], shown: int = 12) -> str:
    """The first names and how many there are: a whole ResNet's keys would make an error line
    of ten thousand characters (a checkpoint of another model)."""
    if len(names) <= shown:
        return ', '.join(names)
    return f'{", ".join(names[:shown])}, ... ({len(names)} in all)'


def check_fit(source: str, *, missing: Sequence[str], unexpected: Sequence[str],
              mismatched: Mapping[str, tuple[tuple, tuple]], strict: bool = True) -> None:
    """The loading policy of every weight source, applied before anything is copied.

    `missing`: model variables the checkpoint lacks; `unexpected`: checkpoint entries the
    model lacks; `mismatched`: {name: (checkpoint shape, model shape)} of the tensors the
    caller will skip. With `strict`, a missing or unexpected name is a CheckpointError naming
    them (a wrong config or file); otherwise a warning. Skipped tensors are one warning: they
    keep the model's initialisation, as in MMAction2 when finetuning to new classes.
    """
    names = [f'missing keys (model variables not in the checkpoint): {_some(missing)}'
             ] if missing else []
    if unexpected:
        names.append(f'unexpected keys (checkpoint entries the model lacks): '
                     f'{_some(unexpected)}')
    if names and strict:
        raise CheckpointError(f'{source} does not fit the model: ' + '; '.join(names))
    for line in names:
        logger.warning('%s: %s', source, line)
    if mismatched:
        logger.warning('%s: %d tensors whose shape differs from the model\'s keep their '
                       'initialisation: %s', source, len(mismatched),
                       '; '.join(f'{name} {ckpt} vs model {model}'
                                 for name, (ckpt, model) in mismatched.items()))


def build_recognizer(model_cfg: Mapping[str, Any], *, seed: int = 0, dtype=jnp.float32):
    """The model of an MMAction2-style model dict (a recognizer, or a localizer: BMN, TEM,
    PEM), initialised from scratch, or its backbone from the `pretrained` file it names."""
    model = build_model(as_dict(model_cfg), rngs=nnx.Rngs(seed), dtype=dtype)
    backbone = getattr(model, 'backbone', None)
    if getattr(backbone, 'pretrained', None):
        load_pretrained(backbone)
    return model


def load_pretrained(backbone: nnx.Module) -> None:
    """`backbone.pretrained` into the backbone, as MMAction2's `init_weights` does.

    `pretrained2d` (the default): a torchvision 2D ResNet, inflated for 3D convs; keys that do
    not fit are logged, as MMAction2 does. `pretrained2d=False`: an MMAction2 checkpoint of
    this backbone (its own keys, or a recognizer's `backbone.*` ones), loaded strictly: a
    missing or unexpected key is an error, since training would silently start from random
    weights otherwise (a tensor of another shape is skipped with a warning, as everywhere).
    """
    path = backbone.pretrained
    if getattr(backbone, 'pretrained2d', True):
        from action_jax.convert.torchvision import init_backbone_from_torchvision
        init_backbone_from_torchvision(backbone, path)
        return
    from action_jax.convert.mmaction2 import apply_state_dict, load_mmaction2_checkpoint
    state_dict = load_mmaction2_checkpoint(path)
    if any(key.startswith('backbone.') for key in state_dict):
        state_dict = {key.removeprefix('backbone.'): value for key, value in state_dict.items()
                      if key.startswith('backbone.')}
    apply_state_dict(backbone, state_dict, strict=True, source=path)


def load_weights(model, path: str, strict: bool = True) -> None:
    """Loads model weights in place from an MMAction2 `.pth` or an action_jax checkpoint, by
    :func:`check_fit`'s policy (`strict`: names must match; shapes that differ are skipped).
    A localizer's `.pth` is always loaded strictly (convert/localizers.py)."""
    kind, location = resolve(path)
    if kind == 'pth':
        from action_jax.convert import localizers, mmaction2
        from action_jax.models.localizers import LOCALIZERS
        state_dict = mmaction2.load_mmaction2_checkpoint(location)
        if isinstance(model, tuple(LOCALIZERS.values())):
            localizers.apply_localizer_state_dict(model, state_dict)
        else:
            mmaction2.apply_state_dict(model, state_dict, strict=strict, source=location)
        return
    weights = restore_weights(location)
    rest = _flatten(weights['rest'])
    # Parameters and BatchNorm statistics. Dropout rng streams ({key, count} per module) stay
    # the new model's own, and one with other dropout has other streams: not compared.
    streams = {name.rpartition('/')[0] for name, value in rest.items()
               if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)}
    stored = {**_flatten(weights['params']),
              **{name: v for name, v in rest.items() if name.rpartition('/')[0] not in streams}}
    known = {_name(p): v for p, v in nnx.iter_graph(model) if isinstance(v, nnx.Variable)}
    wanted = {name: v for name, v in known.items() if isinstance(v, (nnx.Param, nnx.BatchStat))}
    mismatched = {name: (stored[name].shape, v.shape) for name, v in wanted.items()
                  if name in stored and stored[name].shape != v.shape}
    check_fit(location, missing=[name for name in wanted if name not in stored],
              unexpected=[name for name in stored if name not in known],
              mismatched=mismatched, strict=strict)
    for name, variable in wanted.items():
        if name in stored and name not in mismatched:
            variable.set_value(jnp.asarray(stored[name], variable.dtype))


def _name(path: tuple) -> str:
    return '/'.join(map(str, path))


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[str, Any]:
    """{'a/0/b': leaf} of a nested dict (orbax stores list indices as strings)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[_name((*prefix, key))] = value
    return flat


def resolve(path: str) -> tuple[str, str]:
    """('pth', file) for an MMAction2 checkpoint, else ('orbax', step directory).

    Accepts a step directory, a `checkpoints/` or `best/` directory (its latest step) or a
    workdir (its latest training checkpoint).
    """
    if path.endswith('.pth'):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'Checkpoint file {path!r} does not exist.')
        return 'pth', path
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, 'checkpoints')):
        path = os.path.join(path, 'checkpoints')
    if os.path.isdir(os.path.join(path, 'state')):
        return 'orbax', path
    steps = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True) \
        if os.path.isdir(path) else []
    if not steps:
        raise FileNotFoundError(f'No checkpoint found at {path!r} (expected a .pth file, a step '
                                'directory, a checkpoints/ directory or a workdir).')
    return 'orbax', os.path.join(path, str(steps[0]))


def save_weights(model, step_dir: str) -> str:
    """Writes the model's arrays as an action_jax checkpoint step directory (what
    :func:`restore_weights` reads: `step_dir/state`, {'params', 'rest'}); returns it."""
    state = {'params': nnx.state(model, nnx.Param), 'rest': nnx.state(model, nnx.BatchStat)}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(os.path.abspath(step_dir), 'state'), state)
    return os.path.abspath(step_dir)


def _unwrap_values(tree):
    """nnx.State saves each Variable as {'value': array}; return plain nested arrays."""
    if isinstance(tree, Mapping):
        if set(tree) == {'value'}:
            return tree['value']
        return {k: _unwrap_values(v) for k, v in tree.items()}
    return tree


def restore_weights(step_dir: str) -> dict[str, Any]:
    """The model's arrays of an orbax checkpoint as pure dicts {'params', 'rest'}, without
    needing the optimizer that wrote it (load_from, test mode, the inference API)."""
    path = os.path.join(step_dir, 'state')
    # Restore onto this process's first device whatever mesh the checkpoint was saved from.
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    # The item's tree metadata from its handler: the checkpointer's metadata() also looks
    # for the step-level _CHECKPOINT_METADATA inside the item and warns that it is missing.
    handler = ocp.StandardCheckpointHandler()
    try:
        metadata = handler.metadata(epath.Path(path))
    finally:
        handler.close()
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                          metadata)
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(path, target)
    return {'params': _unwrap_values(state['params']), 'rest': _unwrap_values(state['rest'])}
