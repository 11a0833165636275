"""A new model from your own code: a backbone, a head, a data set and a transform, added to
action_jax's registries without editing the package (README "Write a new model").

Importing this module registers them; a config names it in `custom_imports`
(examples/tsn_gated_synthetic.py), and `main`, `init_recognizer` and the exporter import it
before they build anything.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from action_jax.data.datasets import DATASETS, VideoDataset
from action_jax.data.pipeline import TRANSFORMS
from action_jax.models.backbones.resnet import ResNet
from action_jax.models.builder import MODELS
from action_jax.models.heads import TSNHead


class ResNetGated(ResNet):
    """A ResNet whose output channels are scaled by a learnt gate, sigmoid(gate): ResNet's
    arguments (one `out_indices`, the last stage), plus `gate_init`.

    Like MMAction2's ResNetTSM, a subclass that keeps its parent's arguments through **kwargs:
    the config builder follows them up to ResNet, so a misspelt key is still an error.
    """

    def __init__(self, depth: int, gate_init: float = 0.0, *, dtype=jnp.float32,
                 rngs: nnx.Rngs, **kwargs):
        super().__init__(depth, dtype=dtype, rngs=rngs, **kwargs)
        self.gate = nnx.Param(jnp.full((self.feat_dim,), gate_init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        features = super().__call__(x)
        return features * jax.nn.sigmoid(self.gate[...]).astype(features.dtype)


class TSNMaxHead(TSNHead):
    """TSN with the maximum, not the mean, of the segments' pooled features."""

    def __call__(self, x: jax.Array, num_segs: int = 1) -> jax.Array:
        x = x.astype(jnp.float32).mean(axis=(1, 2))
        return self.classify(x.reshape(-1, num_segs, x.shape[-1]).max(axis=1))


class FirstVideosDataset(VideoDataset):
    """A video list's first `max_videos` lines (a quick run on part of a data set)."""

    def __init__(self, ann_file, max_videos: int = 8, **kwargs):
        super().__init__(ann_file, **kwargs)
        self.data_list = self.data_list[:max_videos]


class ToGray:
    """RGB clips to grey (the channel mean, kept in 3 channels), on channels-last uint8
    `imgs`; `rng` is the per-sample generator random transforms draw from (unused)."""

    def __call__(self, results: dict, rng: np.random.Generator | None = None) -> dict:
        imgs = np.asarray(results['imgs'])
        gray = imgs.mean(axis=-1, keepdims=True).round().astype(imgs.dtype)
        results['imgs'] = np.broadcast_to(gray, imgs.shape).copy()
        return results


MODELS.update(ResNetGated=ResNetGated, TSNMaxHead=TSNMaxHead)
DATASETS['FirstVideosDataset'] = FirstVideosDataset
TRANSFORMS['ToGray'] = ToGray
