"""The jitted train and eval steps: pure functions over (graphdef, state, batch).

The model is split once into a static graphdef and array state; each step merges them inside
jit, so a step costs one XLA call and no Python-side module traversal. What a step computes
is the model's own: `model.loss(batch, rng) -> (loss, {'loss': loss, ...})` and
`model.predict(batch)` (recognizers and localizers alike).
"""
from typing import Any, Mapping, NamedTuple

import jax
import optax
from flax import nnx


class TrainState(NamedTuple):
    params: nnx.State      # nnx.Param leaves
    rest: nnx.State        # BatchNorm statistics, dropout rng streams, constant buffers
    opt_state: Any
    step: jax.Array


def train_step(graphdef: nnx.GraphDef, state: TrainState, batch: Mapping[str, jax.Array], *,
               tx: optax.GradientTransformation, schedule,
               seed: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on `model.loss(batch, rng)`, with a key that depends only on
    (seed, step), so a resumed run draws the same numbers."""
    rng = jax.random.fold_in(jax.random.key(seed), state.step)

    def objective(params):
        # copy=True: BatchNorm's running statistics are updated on the merged copy.
        model = nnx.merge(graphdef, params, state.rest, copy=True)
        loss, metrics = model.loss(batch, rng)
        return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

    (_, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, 'grad_norm': optax.tree.norm(grads), 'lr': schedule(state.step)}
    return TrainState(params, rest, opt_state, state.step + 1), metrics


def eval_step(graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State,
              batch: Mapping[str, jax.Array]) -> Any:
    """`model.predict(batch)` with the model in eval mode."""
    return nnx.merge(graphdef, params, rest).predict(batch)
