"""Building a model (recognizer or localizer) from its config and filling it with weights
from a file."""
from typing import Any, Mapping

import jax.numpy as jnp
from flax import nnx

from action_jax.models.builder import build_model
from action_jax.train import checkpoint


def build_recognizer(model_cfg: Mapping[str, Any], *, seed: int = 0, dtype=jnp.float32):
    """The model of an MMAction2-style model dict (a recognizer, or a localizer: BMN, TEM,
    PEM), initialised from scratch (or from the torchvision ImageNet weights its backbone's
    `pretrained` path names)."""
    cfg = model_cfg.to_dict() if hasattr(model_cfg, 'to_dict') else dict(model_cfg)
    model = build_model(cfg, rngs=nnx.Rngs(seed), dtype=dtype)
    pretrained = cfg.get('backbone', {}).get('pretrained')
    if pretrained:
        from action_jax.convert.torchvision import init_backbone_from_torchvision
        init_backbone_from_torchvision(model.backbone, pretrained)
    return model


def load_weights(model, path: str) -> None:
    """Loads model weights in place from an MMAction2 `.pth` or an action_jax checkpoint."""
    kind, location = checkpoint.resolve(path)
    if kind == 'pth':
        from action_jax.convert import localizers, mmaction2
        from action_jax.models.localizers import LOCALIZERS
        state_dict = mmaction2.load_mmaction2_checkpoint(location)
        if isinstance(model, tuple(LOCALIZERS.values())):
            localizers.apply_localizer_state_dict(model, state_dict)
        else:
            mmaction2.apply_state_dict(model, state_dict, strict=True)
        return
    weights = checkpoint.restore_weights(location)
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
