"""Orbax checkpoints: the train state and the grain iterator state saved together.

`<workdir>/checkpoints/<step>/` holds the latest few (model, optimizer, step and data-iterator
position: a restart resumes exactly); `<workdir>/best/<step>/` the best one by a validation
metric (model only). Saves are async and atomic (orbax writes to a temporary directory and
renames it when complete), so a crash mid-save never leaves a half-written checkpoint behind.
"""
import os
from typing import Any, Mapping

from etils import epath
import grain
from absl import logging
import jax
import orbax.checkpoint as ocp


def _abstract(tree, sharding):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


class Checkpointer:

    def __init__(self, workdir: str, *, max_to_keep: int, async_save: bool = True,
                 best_metric: str | None = None):
        options = dict(enable_async_checkpointing=async_save, create=True)
        self.latest = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), 'checkpoints'), item_names=('state', 'data'),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, **options))
        self.best_metric = best_metric
        self.best = None
        if best_metric:
            self.best = ocp.CheckpointManager(
                os.path.join(os.path.abspath(workdir), 'best'), item_names=('state',),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, best_fn=lambda m: m[best_metric], best_mode='max', **options))

    def save(self, step: int, state, data_iterator) -> None:
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

    def latest_path(self) -> str | None:
        """The newest training checkpoint's directory, or None."""
        step = self.latest.latest_step()
        return None if step is None else os.path.join(self.latest.directory, str(step))

    def save_best(self, step: int, state, metrics: Mapping[str, float]) -> None:
        if self.best is not None and step in self.best.all_steps():
            # A resumed run re-validates the steps after its last training checkpoint; the
            # interrupted run may have kept one of them as its best already.
            return
        if self.best is not None and self.best_metric in metrics:
            self.best.save(step, metrics=dict(metrics), force=True,
                           args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

    def restore_latest(self, state, data_iterator, sharding) -> tuple[Any, bool]:
        """(restored state or None, whether `data_iterator` was restored too).

        The iterator's saved state only fits a loader with the same structure: after a change
        of `num_workers` it does not, and the caller repositions the loader from the step.
        """
        step = self.latest.latest_step()
        if step is None:
            return None, False
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state, sharding))))
        try:
            self.latest.restore(step, args=ocp.args.Composite(
                data=grain.checkpoint.CheckpointRestore(data_iterator)))
        except (KeyError, ValueError, IndexError) as e:
            logging.warning('The data-loader state of step %d does not fit this loader (%r); '
                            'repositioning it from the step instead.', step, e)
            return restored['state'], False
        return restored['state'], True

    def restore_best(self, state, sharding):
        restored = self.best.restore(self.best.best_step(), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state, sharding))))
        return restored['state']

    def wait(self) -> None:
        self.latest.wait_until_finished()
        if self.best is not None:
            self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        if self.best is not None:
            self.best.close()


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
