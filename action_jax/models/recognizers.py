"""Recognizers: backbone + classification head, as MMAction2's `recognizers/`.

The view axis (segments for 2D models; clips x crops for 3D models) is folded into the
batch before the backbone, like MMAction2. On normalised, channels-last clips x:
  `__call__(x)`          raw head scores (MMAction2's `mode='tensor'`, stage 'head').
  `predict_scores(x)`    per-video scores after the head's `average_clip`.
On a batch {'imgs': uint8 clips, 'label': ...}, normalised by the `data_preprocessor`:
  `loss(batch, rng)`     (loss, {'loss', 'top1_acc'}) (MMAction2's `mode='loss'`).
  `predict(batch)`       float32 per-video scores (MMAction2's `mode='predict'`).
  `pooled_features(batch)`  float32 per-video backbone features, before the fc.
"""
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from action_jax.models.export_spec import ExportSpec, Output
from action_jax.models.heads import BaseHead
from action_jax.models.preprocessor import ActionDataPreprocessor


class BaseRecognizer(nnx.Module):
    """Shared recognizer logic; subclasses define how the view axis is folded.

    `test_cfg=dict(max_testing_views=k)` runs the backbone on at most k views at a time in
    `predict` (memory only: results are unchanged). `data_preprocessor` is MMAction2's
    ActionDataPreprocessor dict; `train_cfg` and `init_cfg` are accepted for config
    compatibility and not used by the model.
    The backbone provides `frozen_norms()`: the BatchNorms that training keeps in eval mode.
    """

    def __init__(self, backbone: nnx.Module, cls_head: BaseHead | None = None,
                 neck: nnx.Module | None = None, train_cfg: Mapping | None = None,
                 test_cfg: Mapping | None = None, data_preprocessor: Mapping | None = None,
                 init_cfg: Mapping | None = None, *, dtype=jnp.float32):
        if neck is not None:
            raise NotImplementedError('recognizer necks are not implemented')
        test_cfg = dict(test_cfg or {})
        if test_cfg.get('fcn_test', False):
            raise NotImplementedError('test_cfg fcn_test is not implemented')
        self.max_testing_views = test_cfg.get('max_testing_views') or None
        if self.max_testing_views is not None and not isinstance(self.max_testing_views, int):
            raise TypeError('test_cfg max_testing_views must be an int')
        self.backbone = backbone
        self.cls_head = cls_head
        self.data_preprocessor = ActionDataPreprocessor(**dict(data_preprocessor or {}),
                                                        dtype=dtype)
        self.train()

    def train(self, **attributes) -> None:
        """Training mode, except the backbone's frozen_stages/norm_eval/partial_bn BatchNorms,
        which stay on running statistics (MMAction2's `train()` overrides)."""
        super().train(**attributes)
        for bn in self.backbone.frozen_norms():
            bn.use_running_average = True

    def fold_views(self, x: jax.Array) -> tuple[jax.Array, int]:
        """Fold the view axis into the batch; returns (folded input, views per video)."""
        raise NotImplementedError

    def extract_feat(self, x: jax.Array, test_mode: bool = False):
        """Backbone features of the folded input, chunked by `max_testing_views` in test mode."""
        x, _ = self.fold_views(x)
        if test_mode and self.max_testing_views is not None:
            return self._backbone_in_chunks(x, self.max_testing_views)
        return self.backbone(x)

    def _backbone_in_chunks(self, x: jax.Array, chunk: int):
        total = x.shape[0]
        if total <= chunk:
            return self.backbone(x)
        # lax.map runs the chunks one after another, so only one chunk's activations live
        # at a time, also under jit. Meant for eval mode: BN updates of the copies are dropped.
        graphdef, state = nnx.split(self.backbone)

        def run(views: jax.Array):
            return nnx.merge(graphdef, state, copy=True)(views)

        full = total // chunk * chunk
        feats = jax.lax.map(run, x[:full].reshape(total // chunk, chunk, *x.shape[1:]))
        feats = jax.tree.map(lambda f: f.reshape(full, *f.shape[2:]), feats)
        if full < total:
            feats = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), feats, run(x[full:]))
        return feats

    def __call__(self, x: jax.Array) -> jax.Array:
        """Raw class scores (see the subclass for shapes)."""
        _, num_segs = self.fold_views(x)
        return self.cls_head(self.extract_feat(x), num_segs)

    def predict_scores(self, x: jax.Array) -> jax.Array:
        """Per-video scores [N, K] ([N, views, K] when the head's average_clips is None)."""
        _, num_segs = self.fold_views(x)
        scores = self.cls_head(self.extract_feat(x, test_mode=True), num_segs)
        return self.cls_head.predict_by_feat(scores, x.shape[0])

    def loss(self, batch: Mapping[str, jax.Array],
             rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The head's loss on batch['imgs'] (uint8 clips) and batch['label']; `rng` unused
        (dropout draws from the model's own rng streams)."""
        logits = self(self.data_preprocessor(batch['imgs']))
        labels = batch['label']
        loss = self.cls_head.loss(logits, labels)
        metrics = {'loss': loss}
        if labels.ndim == 1:
            metrics['top1_acc'] = jnp.mean(jnp.argmax(logits, -1) == labels)
        return loss, metrics

    def predict(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """float32 per-video scores of batch['imgs'] (uint8 clips)."""
        return self.predict_scores(self.data_preprocessor(batch['imgs'])).astype(jnp.float32)

    def pooled_features(self, batch: Mapping[str, jax.Array]) -> jax.Array:
        """float32 backbone features [N, C] of batch['imgs'] (uint8 clips), before the fc:
        the heads' average pool (spatial, temporal for 3D) and consensus over views and
        frames, in float32 as the heads compute it (features for BMN/BSN, windows.py)."""
        imgs = batch['imgs']
        feat = self.extract_feat(self.data_preprocessor(imgs), test_mode=True)
        feat = feat.astype(jnp.float32)
        return feat.reshape(imgs.shape[0], -1, feat.shape[-1]).mean(axis=1)

    # The exported input: one clip layout per rank of a per-video shape (subclasses).
    EXPORT_LAYOUTS: dict[int, str] = {}

    def export_spec(self) -> ExportSpec:
        """Normalised float32 clips in (the data_preprocessor stays outside the graph, as
        engines take float input), per-video scores out."""
        pre = self.data_preprocessor
        return ExportSpec(
            kind='recognizer', model=type(self).__name__, layouts=self.EXPORT_LAYOUTS,
            input='RGB clips, channels last, (pixel - mean) / std with pixels in 0..255',
            outputs=(Output('scores', 'N,K', 'per-video class scores after average_clips'),),
            channels=(3,),
            metadata={'normalization': 'RGB 0..255, (x - mean) / std',
                      'mean': ','.join(str(v) for v in pre.mean or (0.0, 0.0, 0.0)),
                      'std': ','.join(str(v) for v in pre.std or (1.0, 1.0, 1.0)),
                      'average_clips': str(self.cls_head.average_clips),
                      'num_classes': str(self.cls_head.num_classes)})

    def export_outputs(self, x: jax.Array) -> tuple[jax.Array, ...]:
        return (self.predict_scores(x).astype(jnp.float32),)

    def prepare_export(self, softmax: bool = False) -> None:
        """Eval mode; the backbone runs on all views at once (max_testing_views chunking saves
        memory only and would become a loop op); `softmax`: average_clips='prob'."""
        self.eval()
        self.max_testing_views = None
        if softmax:
            self.cls_head.average_clips = 'prob'


class Recognizer2D(BaseRecognizer):
    """2D recognizer (TSN, TSM) on x [N, F, H, W, C].

    `__call__` gives [N, K] for TSN (consensus over all F frames) and
    [N * F / num_segments, K] for TSM (clips of the head's num_segments frames).
    """

    def __init__(self, backbone: nnx.Module, cls_head: BaseHead | None = None, **kwargs):
        super().__init__(backbone, cls_head, **kwargs)
        # A TSM clip must not straddle two chunks, or the temporal shift would mix them.
        segments = getattr(backbone, 'num_segments', None)
        if self.max_testing_views and segments and self.max_testing_views % segments:
            raise ValueError(f'max_testing_views ({self.max_testing_views}) must be a multiple '
                             f'of the backbone num_segments ({segments})')

    EXPORT_LAYOUTS = {3: 'N,F,H,W,C'}

    def fold_views(self, x: jax.Array) -> tuple[jax.Array, int]:
        if x.ndim != 5:
            raise ValueError(f'Recognizer2D expects [N, F, H, W, C], got shape {x.shape}')
        return x.reshape(-1, *x.shape[2:]), x.shape[1]


class Recognizer3D(BaseRecognizer):
    """3D recognizer (I3D) on x [N, V, T, H, W, C] (V views) or [N, T, H, W, C] (one view);
    `__call__` gives [N * V, K]."""

    EXPORT_LAYOUTS = {4: 'N,V,T,H,W,C', 3: 'N,T,H,W,C'}

    def fold_views(self, x: jax.Array) -> tuple[jax.Array, int]:
        if x.ndim == 5:
            return x, 1
        if x.ndim != 6:
            raise ValueError('Recognizer3D expects [N, V, T, H, W, C] or [N, T, H, W, C], '
                             f'got shape {x.shape}')
        return x.reshape(-1, *x.shape[2:]), x.shape[1]
