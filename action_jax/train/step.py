"""The jitted train and eval steps: pure functions over (graphdef, state, batch).

The model is split once into a static graphdef and array state; each step merges them inside
jit, so a step costs one XLA call and no Python-side module traversal.
"""
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# MMAction2's ActionDataPreprocessor defaults (ImageNet RGB statistics on 0-255 pixels).
DEFAULT_MEAN = (123.675, 116.28, 103.53)
DEFAULT_STD = (58.395, 57.12, 57.375)


# (model, batch, rng) -> (loss, {'loss': loss, ...}) and (model, batch) -> predictions: the
# per-task parts of the steps (train/tasks.py).
LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array],
                  tuple[jax.Array, dict[str, jax.Array]]]
PredictFn = Callable[[nnx.Module, Mapping[str, jax.Array]], Any]


class TrainState(NamedTuple):
    params: nnx.State      # nnx.Param leaves
    rest: nnx.State        # BatchNorm statistics, dropout rng streams, constant buffers
    opt_state: Any
    step: jax.Array


class LossConfig(NamedTuple):
    """The head's loss as MMAction2 configures it (`loss_cls`, `label_smooth_eps`, `multi_class`)."""
    kind: str = 'CrossEntropyLoss'
    weight: float = 1.0
    label_smooth_eps: float = 0.0
    multi_class: bool = False

    @classmethod
    def from_model_cfg(cls, model_cfg: Mapping[str, Any]) -> 'LossConfig':
        head = model_cfg.get('cls_head', {})
        loss = head.get('loss_cls', {}) or {}
        return cls(kind=loss.get('type', 'CrossEntropyLoss'),
                   weight=float(loss.get('loss_weight', 1.0)),
                   label_smooth_eps=float(head.get('label_smooth_eps', 0.0)),
                   multi_class=bool(head.get('multi_class', False)))


def classification_loss(logits: jax.Array, labels: jax.Array, cfg: LossConfig) -> jax.Array:
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    if labels.ndim == 1:  # class indices
        targets = jax.nn.one_hot(labels, num_classes)
    else:                 # multi-hot (multi_class)
        targets = labels.astype(jnp.float32)
    if cfg.label_smooth_eps:
        targets = targets * (1 - cfg.label_smooth_eps) + cfg.label_smooth_eps / num_classes
    if cfg.kind == 'CrossEntropyLoss':
        loss = optax.softmax_cross_entropy(logits, targets)
    elif cfg.kind in ('BCELossWithLogits', 'BCELoss'):
        loss = optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
    else:
        raise KeyError(f'Unknown loss_cls type {cfg.kind!r}; known: CrossEntropyLoss, '
                       'BCELossWithLogits')
    return cfg.weight * loss.mean()


def normalize(imgs: jax.Array, model_cfg: Mapping[str, Any], dtype) -> jax.Array:
    """uint8 clips -> normalised `dtype` on the device (MMAction2's data_preprocessor)."""
    pre = model_cfg.get('data_preprocessor', {}) or {}
    mean = jnp.asarray(pre.get('mean', DEFAULT_MEAN), jnp.float32)
    std = jnp.asarray(pre.get('std', DEFAULT_STD), jnp.float32)
    return ((imgs.astype(jnp.float32) - mean) / std).astype(dtype)


def recognizer_loss(model, batch: Mapping[str, jax.Array], rng: jax.Array, *,
                    loss_cfg: LossConfig, model_cfg: Mapping[str, Any],
                    dtype) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A recognizer's loss on batch['imgs'] (uint8 clips) and batch['label']; `rng` unused
    (dropout draws from the model's own rng streams)."""
    logits = model(normalize(batch['imgs'], model_cfg, dtype))
    labels = batch['label']
    loss = classification_loss(logits, labels, loss_cfg)
    metrics = {'loss': loss}
    if labels.ndim == 1:
        metrics['top1_acc'] = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, metrics


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Mapping[str, jax.Array], *,
               tx: optax.GradientTransformation, schedule, loss_fn: LossFn,
               seed: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step. `loss_fn(model, batch, rng) -> (loss, metrics)` (a Task's `loss`)
    gets a key that depends only on (seed, step), so a resumed run draws the same numbers.
    """
    rng = jax.random.fold_in(jax.random.key(seed), state.step)

    def objective(params):
        # copy=True: BatchNorm's running statistics are updated on the merged copy.
        model = nnx.merge(graphdef, params, state.rest, copy=True)
        loss, metrics = loss_fn(model, batch, rng)
        return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (_, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, 'grad_norm': optax.tree.norm(grads), 'lr': schedule(state.step)}
    return TrainState(params, rest, opt_state, state.step + 1), metrics


def eval_step(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State,
              batch: Mapping[str, jax.Array], *, predict_fn: PredictFn) -> Any:
    """`predict_fn(model, batch)` (a Task's `predict`) with the model in eval mode."""
    return predict_fn(nnx.merge(graphdef, params, rest), batch)
