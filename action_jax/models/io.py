"""Building a model (recognizer or localizer) from its config, and filling it with weights:
the backbone's `pretrained` file, an MMAction2 `.pth` or an action_jax (orbax) checkpoint.

Weight converters (action_jax.convert, torch) are imported only when a `.pth` is read.
"""
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from action_jax.config import as_dict
from action_jax.models.builder import build_model


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
    weights otherwise.
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
    apply_state_dict(backbone, state_dict, strict=True)


def load_weights(model, path: str) -> None:
    """Loads model weights in place from an MMAction2 `.pth` or an action_jax checkpoint."""
    kind, location = resolve(path)
    if kind == 'pth':
        from action_jax.convert import localizers, mmaction2
        from action_jax.models.localizers import LOCALIZERS
        state_dict = mmaction2.load_mmaction2_checkpoint(location)
        if isinstance(model, tuple(LOCALIZERS.values())):
            localizers.apply_localizer_state_dict(model, state_dict)
        else:
            mmaction2.apply_state_dict(model, state_dict, strict=True)
        return
    weights = restore_weights(location)
    # Parameters and BatchNorm statistics; dropout rng streams stay the new model's own.
    params, stats = nnx.state(model, nnx.Param), nnx.state(model, nnx.BatchStat)
    nnx.replace_by_pure_dict(params, weights['params'])
    nnx.replace_by_pure_dict(stats, _only(weights['rest'], nnx.to_pure_dict(stats)))
    nnx.update(model, params, stats)


def _only(tree, like):
    """The part of `tree` whose keys appear in `like` (nested dicts; orbax stores list
    indices as strings)."""
    def get(k):
        return tree[k] if k in tree else tree[str(k)]
    return {k: _only(get(k), v) if isinstance(v, dict) else get(k) for k, v in like.items()}


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
