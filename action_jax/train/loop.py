"""train_and_evaluate and test: the training loop, top to bottom.

One clip's way: list file (data/datasets.py) -> decode + transforms (data/pipeline.py) -> grain
batches (data/loader.py) -> sharded jit step (train/step.py) -> model (models/recognizers.py:
preprocessing, loss and predictions). Localizers (models/localizers) take the same way from
feature files; what differs on the host (metrics, result files) is its task's (train/tasks.py).
"""
import functools
import math
import os
import signal
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from action_jax import xla_options
from action_jax.config import as_dict, compute_dtype
from action_jax.data import loader
from action_jax.data.datasets import DATASETS, build_dataset
from action_jax.models.fuse import fuse_conv_bn
from action_jax.models.io import build_recognizer, load_weights
from action_jax.progress import track
from action_jax.train import optim, sharding
from action_jax.train.input_pipeline import DevicePrefetch, InputWait
from action_jax.train.checkpoint import Checkpointer
from action_jax.train.scalar_log import ScalarLog
from action_jax.train.step import TrainState, eval_step, train_step
from action_jax.train.tasks import build_task
from action_jax.user_errors import UserError


class _Preemption:
    """SIGTERM (a preempted job) asks the loop to checkpoint and exit cleanly.

    With several processes they must all stop after the same step (the checkpoint is a
    collective save): jax.distributed's preemption service catches SIGTERM on any process and
    agrees on that step; a Python handler here would replace its own.
    """

    def __init__(self):
        self.requested = False
        self.multiprocess = jax.process_count() > 1
        if not self.multiprocess:
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        logging.warning('SIGTERM received: saving a checkpoint and exiting.')
        self.requested = True

    def check(self, step: int) -> bool:
        """Whether to checkpoint and exit after `step`; called once per step, on every process."""
        if self.multiprocess and not self.requested:
            from jax.experimental import multihost_utils
            if multihost_utils.reached_preemption_sync_point(step):
                logging.warning('Preemption notice: saving a checkpoint after step %d and '
                                'exiting.', step)
                self.requested = True
        return self.requested


def _best_metric(config, task) -> str | None:
    save_best = config.default_hooks.checkpoint.save_best
    if not save_best:
        return None
    return task.best_metric if save_best == 'auto' else save_best


class _Throughput:
    def __init__(self, total_steps: int):
        self.total, self.t0, self.step0 = total_steps, None, None

    def update(self, step: int) -> tuple[float, float]:
        """(steps/s since the first logged step, seconds left)."""
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.step0 = now, step
            return float('nan'), float('nan')
        rate = (step - self.step0) / max(now - self.t0, 1e-9)
        return rate, (self.total - step) / max(rate, 1e-9)


def _fmt_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return '?'
    return time.strftime('%H:%M:%S', time.gmtime(seconds))


# --------------------------------------------------------------------------------------------
# Evaluation (also the test mode).

def make_eval_step():
    """The jitted eval step, built once per run (a new jit would recompile every epoch)."""
    return xla_options.jit(eval_step, static_argnums=0)


def evaluate(task, step, graphdef, params, rest, dataloader_cfg, mesh,
             dataset) -> tuple[dict[str, float], Any]:
    """Runs a whole split (`dataset`, from `build_split`) through `step` (make_eval_step);
    returns the task's (metrics, per-video results), in list-file order."""
    local_bs = dataloader_cfg.batch_size * jax.local_device_count()
    batches = loader.eval_dataset(
        dataset, dataloader_cfg.dataset.pipeline, batch_size=local_bs,
        num_workers=loader.total_workers(dataloader_cfg.num_workers, jax.local_device_count()),
        shard_index=jax.process_index(),
        shard_count=jax.process_count())
    predictions, rows, skipped = [], [], 0
    for batch in track(_closing(batches), 'Evaluating',
                       total=math.ceil(len(dataset) / (jax.process_count() * local_bs))):
        skipped += _pop_skipped(batch)
        arrays = sharding.global_batch(task.prepare_batch(batch, train=False), mesh)
        out = jax.tree.map(sharding.to_host, step(graphdef, params, rest, arrays))
        # The other arrays (labels, index, valid, ...) come back for the task's evaluation.
        row = {k: sharding.to_host(v) for k, v in arrays.items() if k not in task.input_keys}
        valid = row['valid']
        predictions.append(jax.tree.map(lambda a: a[valid], out))
        rows.append({k: v[valid] for k, v in row.items()})
    order = np.argsort(np.concatenate([r['index'] for r in rows]), kind='stable')
    predictions = jax.tree.map(lambda *a: np.concatenate(a)[order], *predictions)
    rows = {k: np.concatenate([r[k] for r in rows])[order] for k in rows[0]}
    logging.log(logging.WARNING if skipped else logging.INFO,
                'Evaluation: %d videos could not be decoded and were left out.', skipped)
    return task.evaluate(dataset, predictions, rows)


def test(config, workdir: str, step=None) -> dict[str, float]:
    """`--mode test`: evaluates `config.checkpoint` on the test split; writes the per-video
    results to `config.out` if given. `step(graphdef, params, rest, batch)` replaces the
    jitted eval step (main.py passes export/deployed.py's for an exported model)."""
    if not config.checkpoint:
        raise ValueError('--mode test needs --config.checkpoint=PATH')
    prepare_data(config)
    dataset = build_split(config.test_dataloader.dataset, config.model)
    mesh = sharding.create_mesh()
    model = build_recognizer(config.model, seed=config.seed, dtype=compute_dtype(config))
    load_weights(model, config.checkpoint)
    model.eval()
    if step is None:
        # Inference only from here: BatchNorm folded into the convs, and on CPU 3D convs run
        # as 2D ones (models/fuse.py; same scores within ~2e-6, I3D several times faster).
        model = fuse_conv_bn(model)
    task = build_task(model, config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = sharding.replicate((params, rest), mesh)
    step = step or make_eval_step()
    metrics, results = evaluate(task, step, graphdef, params, rest, config.test_dataloader, mesh,
                                dataset)
    logging.info('Test metrics: %s', _fmt_metrics(metrics))
    if config.out and jax.process_index() == 0:
        task.write_results(results, config.out)
    return metrics


def prepare_data(config) -> None:
    """Generates the synthetic data set a config names if it is not there yet."""
    spec = as_dict(config.synthetic_data)
    if not spec:
        return
    make = _synthetic_generator(spec.pop('type', 'SyntheticVideos'))
    out = spec.pop('out')
    if jax.process_index() == 0 and not os.path.exists(os.path.join(out, 'label_map.txt')):
        logging.info('Generating the synthetic data set in %s ...', out)
        make(out, **spec)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices('synthetic data ready')


def _synthetic_generator(kind: str):
    """The generator of a `synthetic_data.type`; each writes label_map.txt last."""
    if kind == 'SyntheticVideos':
        from action_jax.data.synthetic import make_synthetic
        return make_synthetic
    if kind == 'SyntheticLocalization':
        from action_jax.localization.synthetic import make_synthetic_localization
        return make_synthetic_localization
    raise KeyError(f'synthetic_data.type={kind!r}; known: SyntheticVideos, '
                   'SyntheticLocalization')


def build_split(dataset_cfg, model_cfg):
    """A split's dataset, its labels checked against the classifier's `num_classes` (the head's
    when the dataset config gives none: one_hot of an out-of-range label is silently zeros)."""
    cfg = as_dict(dataset_cfg)
    head_classes = as_dict(model_cfg).get('cls_head', {}).get('num_classes')
    if head_classes is not None and cfg.get('type', 'VideoDataset') in DATASETS:
        if cfg.get('num_classes') is None:
            cfg['num_classes'] = head_classes
        elif cfg['num_classes'] > head_classes:
            raise ValueError(f'{cfg.get("ann_file")}: dataset num_classes={cfg["num_classes"]} '
                             f'exceeds the model\'s cls_head.num_classes={head_classes}.')
    return build_dataset(cfg)


def _closing(dataset):
    """Iterates `dataset`, then shuts its loader down (worker processes, shared memory): left
    to the garbage collector at exit they print tracebacks and leaked-memory warnings."""
    iterator = iter(dataset)
    try:
        yield from iterator
    finally:
        iterator.close()


def _pop_skipped(batch) -> int:
    """Removes the loader's skip report from `batch`; logs the files (read in worker processes,
    whose own log lines reach neither this process's log file nor its console)."""
    for names in batch.pop('skipped_files'):
        for name in filter(None, str(names).split('\n')):
            logging.warning('Skipped unreadable sample %s', name)
    return int(batch.pop('num_skipped').sum())


def _fmt_metrics(metrics: Mapping[str, float]) -> str:
    return '  '.join(f'{k} {v:.4f}' for k, v in metrics.items()) or '(no metrics)'


# --------------------------------------------------------------------------------------------
# Training.

def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains, validating every `val_interval` epochs; returns the final test metrics (and
    writes the per-video test results to `config.out` if given)."""
    os.makedirs(workdir, exist_ok=True)
    preemption = _Preemption()
    prepare_data(config)
    # Every list parsed and its labels checked now, not when evaluation first runs hours later.
    dl = config.train_dataloader
    train_set = build_split(dl.dataset, config.model)
    eval_sets = {name: build_split(getattr(config, name).dataset, config.model)
                 for name in ('val_dataloader', 'test_dataloader')
                 if getattr(config, name).dataset}
    mesh = sharding.create_mesh()
    model_cfg = as_dict(config.model)
    dtype = compute_dtype(config)
    is_main = jax.process_index() == 0
    writer = ScalarLog(workdir, is_main)
    if is_main:
        with open(os.path.join(workdir, 'config.json'), 'w') as f:
            f.write(config.to_json_best_effort(indent=2))
        writer.hparams(as_dict(config))

    # Model, split once into static graphs (train and eval modes) and array state.
    model = build_recognizer(config.model, seed=config.seed, dtype=dtype)
    if config.load_from:
        load_weights(model, config.load_from, strict=config.load_from_strict)
    task = build_task(model, config)
    model.train()
    train_graph, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_graph = nnx.graphdef(model)

    # Data.
    local_bs = dl.batch_size * jax.local_device_count()
    global_bs = dl.batch_size * jax.device_count()
    steps_per_epoch = loader.steps_per_epoch(len(train_set), global_bs)
    total_steps = config.train_cfg.max_epochs * steps_per_epoch

    num_workers = loader.total_workers(dl.num_workers, jax.local_device_count())

    def train_batches(start_batch: int = 0):
        return iter(loader.train_dataset(
            train_set, dl.dataset.pipeline, batch_size=local_bs,
            seed=config.seed, num_workers=num_workers, shard_index=jax.process_index(),
            shard_count=jax.process_count(), start_batch=start_batch))
    train_iter = train_batches()

    # Optimizer.
    base_lr = optim.scaled_lr(config.optim_wrapper.optimizer.lr, global_bs, config.auto_scale_lr)
    schedule = optim.build_schedule(list(config.param_scheduler), base_lr, steps_per_epoch,
                                    config.train_cfg.max_epochs)
    tx = optim.build_optimizer(as_dict(config.optim_wrapper), params, schedule,
                               optim.frozen_filter(model_cfg))
    state = TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))
    state = sharding.replicate(state, mesh)

    ckpt_cfg = config.default_hooks.checkpoint
    ckpt = Checkpointer(workdir, max_to_keep=ckpt_cfg.max_keep_ckpts,
                        async_save=ckpt_cfg.async_save, best_metric=_best_metric(config, task))
    restored, data_restored = ckpt.restore_latest(state, train_iter, sharding.replicated(mesh))
    if restored is None and config.resume_from:
        restored, data_restored = Checkpointer(config.resume_from, max_to_keep=1).restore_latest(
            state, train_iter, sharding.replicated(mesh))
        if restored is None:
            raise FileNotFoundError(f'resume_from={config.resume_from!r} has no checkpoints/.')
    if restored is not None:
        state = restored
        logging.info('Resumed at step %d (epoch %.2f).', int(state.step),
                     int(state.step) / steps_per_epoch)
        if not data_restored:
            train_iter.close()
            train_iter = train_batches(start_batch=int(state.step))
    start = int(state.step)
    # An interrupted run may have logged steps after its last checkpoint: they are redone.
    writer.truncate(start)

    step_fn = xla_options.jit(
        functools.partial(_checked_train_step, tx=tx, schedule=schedule, seed=config.seed),
        static_argnums=0, donate_argnums=1)
    eval_fn = make_eval_step()
    logging.info('Training: %d samples, global batch %d on %d devices (%d processes), '
                 '%d steps/epoch, %d epochs, lr %.5g, %d loader worker processes.',
                 len(train_set), global_bs, jax.device_count(), jax.process_count(),
                 steps_per_epoch, config.train_cfg.max_epochs, base_lr, num_workers)

    log_every = config.default_hooks.logger.interval
    throughput = _Throughput(total_steps)
    counts = dict(served=0, skipped=0)

    def to_devices(batch):
        # Host-side work on a batch taken from the loader (ahead of its step).
        if counts['served'] == 0 and 'imgs' in batch:  # recognizers: what the model is fed
            writer.images(start, 'train/clips', np.asarray(batch['imgs'][:4]))
        counts['skipped'] += _pop_skipped(batch)
        counts['served'] += local_bs
        _check_failure_ratio(counts['served'], counts['skipped'], dl)
        return sharding.global_batch(task.prepare_batch(batch, train=True), mesh)
    train_iter = DevicePrefetch(train_iter, to_devices)
    input_wait = InputWait()
    pending = None  # last step's metrics, checked one step late so the host never stalls
    for step in range(start, total_steps):
        with input_wait.waiting():
            batch = next(train_iter)
        state, metrics = step_fn(train_graph, state, batch)
        # On CPU the device batch may alias the loader's shared memory: held past the loop,
        # it would outlive the loader and leak that memory at exit.
        del batch
        if pending is not None:
            _check_finite(*pending, ckpt)
        pending = (step + 1, metrics)

        if (step + 1) % log_every == 0 or step + 1 == total_steps:
            _check_finite(*pending, ckpt)
            rate, eta = throughput.update(step + 1)
            scalars = {k: float(v) for k, v in metrics.items() if k != 'finite'}
            logged = _fmt_metrics(scalars)
            scalars['skipped_samples'] = counts['skipped']
            scalars['input_bound_fraction'] = input_wait.fraction()
            # The first logged step has no rate yet: NaN is not JSON (and TensorBoard warns).
            if np.isfinite(rate):
                scalars['clips_per_sec'] = rate * global_bs
            writer.write(step + 1, scalars, epoch=step // steps_per_epoch + 1)
            logging.info('epoch %d [%d/%d] step %d/%d  %s  clips/s %.1f  input-bound %.0f%%  '
                         'skipped %d  eta %s', step // steps_per_epoch + 1,
                         step % steps_per_epoch + 1, steps_per_epoch, step + 1, total_steps,
                         logged, rate * global_bs, 100 * scalars['input_bound_fraction'],
                         counts['skipped'], _fmt_eta(eta))

        epoch_end = (step + 1) % steps_per_epoch == 0
        epoch = (step + 1) // steps_per_epoch
        preempted = preemption.check(step + 1)
        if preempted or epoch_end:
            # Nothing non-finite is saved, as a checkpoint or as the best one.
            _check_finite(*pending, ckpt)
        if preempted or (epoch_end and epoch % ckpt_cfg.interval == 0):
            ckpt.save(step + 1, state, train_iter)
        if preempted:
            ckpt.wait()
            train_iter.close()
            logging.info('Checkpoint saved at step %d; exiting for preemption.', step + 1)
            return {}
        # No val set, no validation (MMAction2's val_dataloader=None).
        if ('val_dataloader' in eval_sets and epoch_end
                and epoch >= config.train_cfg.val_begin
                and epoch % config.train_cfg.val_interval == 0):
            metrics = evaluate(task, eval_fn, eval_graph, state.params, state.rest,
                               config.val_dataloader, mesh, eval_sets['val_dataloader'])[0]
            writer.write(step + 1, {f'val/{k}': v for k, v in metrics.items()})
            logging.info('Validation after epoch %d: %s', epoch, _fmt_metrics(metrics))
            ckpt.save_best(step + 1, state, metrics)

    if pending is not None:
        _check_finite(*pending, ckpt)
    if total_steps not in ckpt.latest.all_steps():
        ckpt.save(total_steps, state, train_iter)
    ckpt.wait()
    train_iter.close()
    logging.info('Training done: %d training samples could not be decoded and were replaced.',
                 counts['skipped'])

    results = {}
    if 'test_dataloader' in eval_sets:
        results, per_video = evaluate(task, eval_fn, eval_graph, state.params, state.rest,
                                      config.test_dataloader, mesh, eval_sets['test_dataloader'])
        logging.info('Test (last checkpoint): %s', _fmt_metrics(results))
        if config.out and is_main:
            task.write_results(per_video, config.out)
        if config.test_best and ckpt.best is not None and ckpt.best.best_step() is not None:
            best = ckpt.restore_best(state, sharding.replicated(mesh))
            best_metrics = evaluate(task, eval_fn, eval_graph, best.params, best.rest,
                                    config.test_dataloader, mesh,
                                    eval_sets['test_dataloader'])[0]
            logging.info('Test (best checkpoint, step %d): %s', ckpt.best.best_step(),
                         _fmt_metrics(best_metrics))
            results.update({f'best/{k}': v for k, v in best_metrics.items()})
        writer.write(total_steps, {f'test/{k}': v for k, v in results.items()})
    ckpt.close()
    writer.close()
    return results


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.isfinite(a).all() for a in jax.tree.leaves(tree)
                              if jnp.issubdtype(a.dtype, jnp.inexact)]))


def _checked_train_step(graphdef, state, batch, **kwargs):
    """train_step, with metrics['finite']: whether the new state (parameters, statistics,
    optimizer) and the metrics are all finite. A finite loss can come with non-finite
    gradients, so the loss alone does not tell; one reduction on the device does."""
    state, metrics = train_step(graphdef, state, batch, **kwargs)
    return state, {**metrics, 'finite': _all_finite((state, metrics))}


class DivergedError(UserError, FloatingPointError):
    """Training produced non-finite values; its message names the step and what to resume
    from, so the CLIs print it as one line."""


def _check_finite(step: int, metrics: Mapping[str, jax.Array], ckpt: Checkpointer) -> None:
    if bool(metrics['finite']):
        return
    good = ckpt.latest_path()
    raise DivergedError(
        f'Training diverged at step {step} (loss {float(metrics["loss"]):.4g}, grad_norm '
        f'{float(metrics["grad_norm"]):.4g}, non-finite values in the loss, gradients or new '
        'state); stopping without saving it. '
        + (f'The last good checkpoint is {good}' if good else 'No checkpoint was saved yet')
        + ': lower the learning rate or check the data, then resume.')


def _check_failure_ratio(served: int, skipped: int, dl) -> None:
    if served + skipped < dl.min_samples_for_failure_check:
        return
    ratio = skipped / (served + skipped)
    if ratio > dl.max_failure_ratio:
        raise RuntimeError(
            f'{skipped} of {served + skipped} training samples ({ratio:.1%}) could not be decoded, '
            f'more than max_failure_ratio={dl.max_failure_ratio}: the data set looks broken '
            '(see the warnings above for the files).')
