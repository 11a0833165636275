"""Recognition heads (TSN, TSM, I3D) on channels-last features, as MMAction2's `heads/`.

Each head keeps MMAction2's order of operations:
  TSNHead: spatial pool -> mean over segments -> dropout -> fc_cls
  TSMHead: spatial pool -> dropout -> fc_cls per frame -> mean over segments
  I3DHead: spatio-temporal pool -> dropout -> fc_cls
Pooling and consensus run in float32; `fc_cls` computes in `dtype` and logits are float32.
Heads own their loss (`loss_cls`, `label_smooth_eps`, `multi_class`), as MMAction2's do.
"""
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

AVERAGE_CLIPS = ('score', 'prob', None)
LOSSES = ('CrossEntropyLoss', 'BCELossWithLogits', 'BCELoss')


def _pool(x: jax.Array, spatial_type: str | None) -> jax.Array:
    """Global average over every axis between batch and channels ('avg'), else flatten."""
    x = x.astype(jnp.float32)
    if spatial_type == 'avg':
        return x.mean(axis=tuple(range(1, x.ndim - 1)))
    return x.reshape(x.shape[0], -1)


def _check_consensus(consensus: Mapping | None) -> None:
    consensus = dict(consensus or {'type': 'AvgConsensus', 'dim': 1})
    if consensus.get('type') != 'AvgConsensus' or consensus.get('dim', 1) != 1:
        raise NotImplementedError(f'consensus {consensus}: only AvgConsensus over dim 1')


class BaseHead(nnx.Module):
    """Dropout + `fc_cls` classifier, its loss and MMAction2's test-time clip averaging.

    `loss_cls=dict(type='CrossEntropyLoss' | 'BCELossWithLogits', loss_weight=1.0)`;
    `init_cfg` is accepted for config compatibility.
    """

    def __init__(self, num_classes: int, in_channels: int, *, dropout_ratio: float,
                 init_std: float, spatial_type: str | None = 'avg',
                 loss_cls: Mapping | None = None, multi_class: bool = False,
                 label_smooth_eps: float = 0.0, topk: int | Sequence[int] = (1, 5),
                 average_clips: str | None = None, init_cfg: Mapping | None = None,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f'{average_clips} is not supported. Currently supported ones '
                             f'are ["score", "prob", None]')
        if spatial_type not in ('avg', None):
            raise NotImplementedError(f"spatial_type {spatial_type!r}: only 'avg' or None")
        loss_cls = dict(loss_cls or {})
        self.loss_type = loss_cls.pop('type', 'CrossEntropyLoss')
        self.loss_weight = float(loss_cls.pop('loss_weight', 1.0))
        if self.loss_type not in LOSSES or loss_cls:
            raise ValueError(f'loss_cls type {self.loss_type!r} with {sorted(loss_cls)}: '
                             f'known types {", ".join(LOSSES)}, argument loss_weight')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.spatial_type = spatial_type
        self.multi_class = multi_class
        self.label_smooth_eps = label_smooth_eps
        self.topk = (topk,) if isinstance(topk, int) else tuple(topk)
        self.average_clips = average_clips
        self.dropout = nnx.Dropout(dropout_ratio, rngs=rngs) if dropout_ratio != 0 else None
        self.fc_cls = nnx.Linear(in_channels, num_classes,
                                 kernel_init=nnx.initializers.normal(init_std),
                                 bias_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)

    def classify(self, x: jax.Array) -> jax.Array:
        """dropout -> fc_cls on [..., in_channels] float32 features."""
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc_cls(x).astype(jnp.float32)

    def loss(self, cls_scores: jax.Array, labels: jax.Array) -> jax.Array:
        """The weighted loss of [B, K] scores against class indices [B] or multi-hot [B, K]
        labels (`multi_class`), targets smoothed by `label_smooth_eps`."""
        logits = cls_scores.astype(jnp.float32)
        if labels.ndim == 1:
            targets = jax.nn.one_hot(labels, self.num_classes)
        else:
            targets = labels.astype(jnp.float32)
        if self.label_smooth_eps:
            targets = (targets * (1 - self.label_smooth_eps)
                       + self.label_smooth_eps / self.num_classes)
        if self.loss_type == 'CrossEntropyLoss':
            loss = optax.softmax_cross_entropy(logits, targets)
        else:
            loss = optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
        return self.loss_weight * loss.mean()

    def average_clip(self, cls_scores: jax.Array, num_segs: int = 1) -> jax.Array:
        """[B * num_segs, K] -> [B, K] ('prob': mean of softmax, 'score': mean of scores),
        or [B, num_segs, K] when `average_clips` is None."""
        cls_scores = cls_scores.reshape(-1, num_segs, *cls_scores.shape[1:])
        if self.average_clips == 'prob':
            return jax.nn.softmax(cls_scores, axis=2).mean(axis=1)
        if self.average_clips == 'score':
            return cls_scores.mean(axis=1)
        return cls_scores

    def predict_by_feat(self, cls_scores: jax.Array, batch_size: int) -> jax.Array:
        """Per-video scores: average the clips/views of each of the `batch_size` videos."""
        return self.average_clip(cls_scores, cls_scores.shape[0] // batch_size)


class TSNHead(BaseHead):
    """TSN: the segment consensus averages pooled features before the classifier."""

    def __init__(self, num_classes: int, in_channels: int, spatial_type: str | None = 'avg',
                 consensus: Mapping | None = None, dropout_ratio: float = 0.4,
                 init_std: float = 0.01, *, dtype=jnp.float32, rngs: nnx.Rngs, **kwargs):
        _check_consensus(consensus)
        super().__init__(num_classes, in_channels, dropout_ratio=dropout_ratio,
                         init_std=init_std, spatial_type=spatial_type, dtype=dtype,
                         rngs=rngs, **kwargs)

    def __call__(self, x: jax.Array, num_segs: int = 1) -> jax.Array:
        """[N * num_segs, H, W, C] -> [N, num_classes]."""
        x = _pool(x, self.spatial_type)
        x = x.reshape(-1, num_segs, x.shape[-1]).mean(axis=1)
        return self.classify(x)


class TSMHead(BaseHead):
    """TSM: classify every frame, then average the scores over the head's `num_segments`
    (halved after a temporal pool)."""

    def __init__(self, num_classes: int, in_channels: int, num_segments: int = 8,
                 spatial_type: str | None = 'avg', consensus: Mapping | None = None,
                 dropout_ratio: float = 0.8, init_std: float = 0.001, is_shift: bool = True,
                 temporal_pool: bool = False, *, dtype=jnp.float32, rngs: nnx.Rngs,
                 **kwargs):
        _check_consensus(consensus)
        super().__init__(num_classes, in_channels, dropout_ratio=dropout_ratio,
                         init_std=init_std, spatial_type=spatial_type, dtype=dtype,
                         rngs=rngs, **kwargs)
        self.num_segments = num_segments
        self.is_shift = is_shift
        self.temporal_pool = temporal_pool

    def __call__(self, x: jax.Array, num_segs: int | None = None) -> jax.Array:
        """[N * num_segments, H, W, C] -> [N, num_classes]; `num_segs` (the input's frame
        count) is ignored, as in MMAction2."""
        scores = self.classify(_pool(x, self.spatial_type))
        segments = self.num_segments
        if self.is_shift and self.temporal_pool:
            segments //= 2
        return scores.reshape(-1, segments, scores.shape[-1]).mean(axis=1)


class I3DHead(BaseHead):
    """I3D: global spatio-temporal average pool, dropout, fc_cls."""

    def __init__(self, num_classes: int, in_channels: int, spatial_type: str | None = 'avg',
                 dropout_ratio: float = 0.5, init_std: float = 0.01, *,
                 dtype=jnp.float32, rngs: nnx.Rngs, **kwargs):
        super().__init__(num_classes, in_channels, dropout_ratio=dropout_ratio,
                         init_std=init_std, spatial_type=spatial_type, dtype=dtype,
                         rngs=rngs, **kwargs)

    def __call__(self, x: jax.Array, num_segs: int | None = None) -> jax.Array:
        """[B, T, H, W, C] -> [B, num_classes]."""
        return self.classify(_pool(x, self.spatial_type))
