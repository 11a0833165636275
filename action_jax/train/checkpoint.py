"""Orbax checkpoints: the train state and the grain iterator state saved together.

`<workdir>/checkpoints/<step>/` holds the latest few (model, optimizer, step and data-iterator
position: a restart resumes exactly); `<workdir>/best/<step>/` the best one by a validation
metric (model only). Saves are async and atomic (orbax writes to a temporary directory and
renames it when complete), so a crash mid-save never leaves a half-written checkpoint behind.
`models/io.py` reads a checkpoint's weights back (`resolve`, `restore_weights`).
"""
import os
from typing import Any, Mapping

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
