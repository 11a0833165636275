"""train_and_evaluate and test: the training loop, top to bottom.

One clip's way: list file (data/datasets.py) -> decode + transforms (data/pipeline.py) -> grain
batches (data/loader.py) -> sharded jit step (train/step.py) -> model (models/recognizers.py).
"""
import functools
import json
import os
import pickle
import signal
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from action_jax.data import loader
from action_jax.data.datasets import build_dataset
from action_jax.evaluation.metrics import evaluate as compute_metrics
from action_jax.train import optim, sharding
from action_jax.train.checkpoint import Checkpointer
from action_jax.train.model_io import build_recognizer, load_weights
from action_jax.train.scalar_log import ScalarLog
from action_jax.train.step import LossConfig, TrainState, eval_step, train_step


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


def _dtype(config):
    return {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[config.compute_dtype]


def _to_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def _best_metric(config) -> str | None:
    save_best = config.default_hooks.checkpoint.save_best
    if not save_best:
        return None
    return 'acc/top1' if save_best == 'auto' else save_best


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

def make_eval_step(model_cfg: Mapping[str, Any], config):
    """The jitted eval step, built once per run (a new jit would recompile every epoch)."""
    return jax.jit(functools.partial(eval_step, model_cfg=model_cfg, dtype=_dtype(config)),
                   static_argnums=0)


def evaluate(step, graphdef, params, rest, dataloader_cfg, config,
             mesh) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Runs a whole split through `step` (make_eval_step); returns (metrics, per-video
    scores, labels) in list-file order."""
    dataset = build_dataset(_to_dict(dataloader_cfg.dataset))
    local_bs = dataloader_cfg.batch_size * jax.local_device_count()
    batches = loader.eval_dataset(
        dataset, dataloader_cfg.dataset.pipeline, batch_size=local_bs,
        num_workers=dataloader_cfg.num_workers, shard_index=jax.process_index(),
        shard_count=jax.process_count())
    scores, labels, indices, skipped = [], [], [], 0
    for batch in batches:
        arrays = sharding.global_batch(
            {k: batch[k] for k in ('imgs', 'label', 'index', 'valid')}, mesh)
        out = sharding.to_host(step(graphdef, params, rest, arrays['imgs']))
        valid = sharding.to_host(arrays['valid'])
        scores.append(out[valid])
        labels.append(sharding.to_host(arrays['label'])[valid])
        indices.append(sharding.to_host(arrays['index'])[valid])
        skipped += int(batch['num_skipped'].sum())
    order = np.argsort(np.concatenate(indices), kind='stable')
    scores = np.concatenate(scores)[order]
    labels = np.concatenate(labels)[order]
    if skipped:
        logging.warning('%d videos could not be decoded and were left out of the evaluation.',
                        skipped)
    # average_clips=None keeps per-view scores; the metrics use their mean.
    flat = scores.mean(axis=1) if scores.ndim == 3 else scores
    metrics = compute_metrics(flat, labels, metrics=tuple(config.eval_metrics),
                              topk=tuple(config.metric_options.topk))
    return metrics, scores, labels


def _dump_results(path: str, scores: np.ndarray, labels: np.ndarray) -> None:
    if path.endswith('.json'):
        with open(path, 'w') as f:
            json.dump([{'pred_score': s.tolist(), 'gt_label': np.asarray(l).tolist()}
                       for s, l in zip(scores, labels)], f)
    elif path.endswith('.pkl'):
        with open(path, 'wb') as f:
            pickle.dump([{'pred_score': s, 'gt_label': l} for s, l in zip(scores, labels)], f)
    else:
        raise ValueError(f'--config.out={path!r}: use a .pkl or .json file name.')
    logging.info('Per-video results written to %s', path)


def test(config, workdir: str) -> dict[str, float]:
    """`--mode test`: evaluates `config.checkpoint` on the test split."""
    if not config.checkpoint:
        raise ValueError('--mode test needs --config.checkpoint=PATH')
    prepare_data(config)
    mesh = sharding.create_mesh()
    model = build_recognizer(config.model, seed=config.seed, dtype=_dtype(config))
    load_weights(model, config.checkpoint)
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = sharding.replicate((params, rest), mesh)
    eval_fn = make_eval_step(_to_dict(config.model), config)
    metrics, scores, labels = evaluate(eval_fn, graphdef, params, rest,
                                       config.test_dataloader, config, mesh)
    logging.info('Test metrics: %s', _fmt_metrics(metrics))
    if config.out and jax.process_index() == 0:
        _dump_results(config.out, scores, labels)
    return metrics


def prepare_data(config) -> None:
    """Generates the synthetic data set a config names if it is not there yet."""
    spec = _to_dict(config.synthetic_data)
    if not spec:
        return
    if jax.process_index() == 0 and not os.path.exists(os.path.join(spec['out'],
                                                                    'label_map.txt')):
        from action_jax.data.synthetic import make_synthetic
        logging.info('Generating the synthetic data set in %s ...', spec['out'])
        make_synthetic(spec.pop('out'), **spec)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices('synthetic data ready')


def _fmt_metrics(metrics: Mapping[str, float]) -> str:
    return '  '.join(f'{k} {v:.4f}' for k, v in metrics.items())


# --------------------------------------------------------------------------------------------
# Training.

def train_and_evaluate(config, workdir: str) -> dict[str, float]:
    """Trains, validating every `val_interval` epochs; returns the final test metrics."""
    os.makedirs(workdir, exist_ok=True)
    prepare_data(config)
    mesh = sharding.create_mesh()
    model_cfg = _to_dict(config.model)
    dtype = _dtype(config)
    is_main = jax.process_index() == 0
    writer = ScalarLog(workdir, is_main)
    if is_main:
        with open(os.path.join(workdir, 'config.json'), 'w') as f:
            f.write(config.to_json_best_effort(indent=2))

    # Model, split once into static graphs (train and eval modes) and array state.
    model = build_recognizer(config.model, seed=config.seed, dtype=dtype)
    if config.load_from:
        load_weights(model, config.load_from)
    model.train()
    train_graph, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    eval_graph = nnx.graphdef(model)

    # Data.
    dl = config.train_dataloader
    train_set = build_dataset(_to_dict(dl.dataset))
    global_bs = dl.batch_size * jax.device_count()
    steps_per_epoch = loader.steps_per_epoch(len(train_set), global_bs)
    total_steps = config.train_cfg.max_epochs * steps_per_epoch

    def train_batches(start_batch: int = 0):
        return iter(loader.train_dataset(
            train_set, dl.dataset.pipeline, batch_size=dl.batch_size * jax.local_device_count(),
            seed=config.seed, num_workers=dl.num_workers, shard_index=jax.process_index(),
            shard_count=jax.process_count(), start_batch=start_batch))
    train_iter = train_batches()

    # Optimizer.
    base_lr = optim.scaled_lr(config.optim_wrapper.optimizer.lr, global_bs, config.auto_scale_lr)
    schedule = optim.build_schedule(list(config.param_scheduler), base_lr, steps_per_epoch,
                                    config.train_cfg.max_epochs)
    tx = optim.build_optimizer(_to_dict(config.optim_wrapper), params, schedule,
                               optim.frozen_filter(model_cfg))
    state = TrainState(params, rest, tx.init(params), jnp.zeros((), jnp.int32))
    state = sharding.replicate(state, mesh)

    ckpt_cfg = config.default_hooks.checkpoint
    ckpt = Checkpointer(workdir, max_to_keep=ckpt_cfg.max_keep_ckpts,
                        async_save=ckpt_cfg.async_save, best_metric=_best_metric(config))
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
            train_iter = train_batches(start_batch=int(state.step))
    start = int(state.step)

    step_fn = jax.jit(
        functools.partial(train_step, tx=tx, schedule=schedule,
                          loss_cfg=LossConfig.from_model_cfg(model_cfg), model_cfg=model_cfg,
                          dtype=dtype),
        static_argnums=0, donate_argnums=1)
    eval_fn = make_eval_step(model_cfg, config)
    logging.info('Training: %d samples, global batch %d on %d devices (%d processes), '
                 '%d steps/epoch, %d epochs, lr %.5g.', len(train_set), global_bs,
                 jax.device_count(), jax.process_count(), steps_per_epoch,
                 config.train_cfg.max_epochs, base_lr)

    preemption = _Preemption()
    log_every = config.default_hooks.logger.interval
    throughput = _Throughput(total_steps)
    served = skipped = 0
    pending = None  # last step's metrics, checked one step late so the host never stalls
    for step in range(start, total_steps):
        batch = next(train_iter)
        skipped += int(batch.pop('num_skipped').sum())
        served += len(batch['label'])
        _check_failure_ratio(served, skipped, dl)
        state, metrics = step_fn(train_graph, state, sharding.global_batch(batch, mesh))
        if pending is not None:
            _check_finite(*pending)
        pending = (step + 1, metrics)

        if (step + 1) % log_every == 0 or step + 1 == total_steps:
            _check_finite(*pending)
            rate, eta = throughput.update(step + 1)
            scalars = {k: float(v) for k, v in metrics.items()}
            scalars['clips_per_sec'] = rate * global_bs
            scalars['skipped_samples'] = skipped
            writer.write(step + 1, scalars)
            logging.info('epoch %d [%d/%d] step %d/%d  %s  clips/s %.1f  eta %s',
                         step // steps_per_epoch + 1, step % steps_per_epoch + 1,
                         steps_per_epoch, step + 1, total_steps,
                         _fmt_metrics({k: v for k, v in scalars.items()
                                       if k not in ('clips_per_sec', 'skipped_samples')}),
                         scalars['clips_per_sec'], _fmt_eta(eta))

        epoch_end = (step + 1) % steps_per_epoch == 0
        epoch = (step + 1) // steps_per_epoch
        preempted = preemption.check(step + 1)
        if preempted or (epoch_end and epoch % ckpt_cfg.interval == 0):
            _check_finite(*pending)
            ckpt.save(step + 1, state, train_iter)
        if preempted:
            ckpt.wait()
            logging.info('Checkpoint saved at step %d; exiting for preemption.', step + 1)
            return {}
        if (epoch_end and epoch >= config.train_cfg.val_begin
                and epoch % config.train_cfg.val_interval == 0):
            metrics = evaluate(eval_fn, eval_graph, state.params, state.rest,
                               config.val_dataloader, config, mesh)[0]
            writer.write(step + 1, {f'val/{k}': v for k, v in metrics.items()})
            logging.info('Validation after epoch %d: %s', epoch, _fmt_metrics(metrics))
            ckpt.save_best(step + 1, state, metrics)

    if pending is not None:
        _check_finite(*pending)
    if total_steps not in ckpt.latest.all_steps():
        ckpt.save(total_steps, state, train_iter)
    ckpt.wait()

    results = {}
    if config.test_dataloader.dataset:
        results = evaluate(eval_fn, eval_graph, state.params, state.rest,
                           config.test_dataloader, config, mesh)[0]
        logging.info('Test (last checkpoint): %s', _fmt_metrics(results))
        if config.test_best and ckpt.best is not None and ckpt.best.best_step() is not None:
            best = ckpt.restore_best(state, sharding.replicated(mesh))
            best_metrics = evaluate(eval_fn, eval_graph, best.params, best.rest,
                                    config.test_dataloader, config, mesh)[0]
            logging.info('Test (best checkpoint, step %d): %s', ckpt.best.best_step(),
                         _fmt_metrics(best_metrics))
            results.update({f'best/{k}': v for k, v in best_metrics.items()})
        writer.write(total_steps, {f'test/{k}': v for k, v in results.items()})
    ckpt.close()
    writer.close()
    return results


def _check_finite(step: int, metrics: Mapping[str, jax.Array]) -> None:
    loss = float(metrics['loss'])
    if not np.isfinite(loss):
        raise FloatingPointError(
            f'Loss is {loss} at step {step}; stopping. The last checkpoint (before this step) '
            'is intact: lower the learning rate or check the data, then resume.')


def _check_failure_ratio(served: int, skipped: int, dl) -> None:
    if served + skipped < dl.min_samples_for_failure_check:
        return
    ratio = skipped / (served + skipped)
    if ratio > dl.max_failure_ratio:
        raise RuntimeError(
            f'{skipped} of {served + skipped} training samples ({ratio:.1%}) could not be decoded, '
            f'more than max_failure_ratio={dl.max_failure_ratio}: the data set looks broken '
            '(see the warnings above for the files).')
