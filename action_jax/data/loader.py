"""grain input pipelines: list file -> shuffled, augmented, batched clips.

Train: range(len) -> shuffle(seed), reshuffled every epoch -> per-sample pipeline with a
per-sample rng (same seed, same batches) -> batch -> every Nth batch for each of N JAX processes
(the same global batches whatever N) -> multiprocess prefetch.
The iterator's state is checkpointed with the model, so a resumed run sees the exact batches the
uninterrupted one would have.

Videos that cannot be decoded are skipped and replaced by another random sample; each batch
carries `num_skipped` and `skipped_files`, so the trainer logs and counts them (also from worker
processes) and aborts when the failure ratio says the data set is mostly broken.
"""
import math
import os
import threading
import time
from typing import Any, Mapping, Sequence

import grain
import numpy as np

from action_jax.data.readers import VideoDecodeError
from action_jax.data.pipeline import Compose

# Errors that mean "this sample's file is unusable", as opposed to a bug or a bad config.
DECODE_ERRORS = (VideoDecodeError, OSError)


def _sample_name(results: Mapping[str, Any]) -> str:
    return str(results.get('filename', results.get('frame_dir', '?')))


class _LoadSample:
    """Index -> transformed sample, replacing undecodable samples by random others."""

    def __init__(self, dataset, pipeline: Sequence[Mapping[str, Any]], max_retries: int):
        self.dataset = dataset
        self.pipeline = Compose(pipeline)
        self.max_retries = max_retries

    def load(self, index: int, rng: np.random.Generator) -> tuple[dict, int]:
        """Returns (sample with the skip report, index actually served).

        The report, `num_skipped` and `skipped_files` (one line per skipped sample, with its
        error), travels in the batch: worker processes' log lines reach neither the trainer's
        log file nor, reliably, its console.
        """
        skipped = []
        for _ in range(self.max_retries + 1):
            results = self.dataset[index]
            try:
                sample = self.pipeline(results, rng)
            except DECODE_ERRORS as e:
                skipped.append(f'{_sample_name(results)}: {e}')
                last_error = e
                index = int(rng.integers(len(self.dataset)))
                continue
            sample['num_skipped'] = np.int32(len(skipped))
            sample['skipped_files'] = np.str_('\n'.join(skipped))
            return sample, index
        raise RuntimeError(
            f'{self.max_retries + 1} samples in a row could not be decoded (last: {last_error}); '
            'the data set looks mostly broken.')


class TrainSample(_LoadSample):
    """grain random_map: the per-sample rng drives sampling and augmentation."""

    def __call__(self, index: int, rng: np.random.Generator) -> dict:
        return self.load(int(index), rng)[0]


class EvalSample(_LoadSample):
    """grain map over padded positions of one process's shard; padding has `valid=False`."""

    def __init__(self, dataset, pipeline, max_retries: int, shard_index: int, shard_count: int):
        super().__init__(dataset, pipeline, max_retries)
        self.shard_index, self.shard_count = shard_index, shard_count

    def __call__(self, position: int) -> dict:
        index = self.shard_index + int(position) * self.shard_count
        valid = index < len(self.dataset)
        index = index if valid else self.shard_index % len(self.dataset)
        # A replacement keeps batch shapes static; it is masked out like padding.
        sample, served = self.load(index, np.random.default_rng(index))
        sample['index'] = np.int32(index)
        sample['valid'] = np.bool_(valid and served == index)
        return sample


def _exit_with_parent(worker_index: int, worker_count: int) -> None:
    """grain worker_init_fn: the worker exits when the process that started it is gone, even
    killed by SIGKILL (otherwise workers and their memory are orphaned forever). A polling
    thread rather than prctl(PR_SET_PDEATHSIG), which fires when the parent *thread* that
    started the worker ends, and exists only on Linux."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # no clean-up to do: the parent that consumed our output is gone
    threading.Thread(target=watch, name='exit_with_parent', daemon=True).start()


def total_workers(num_workers: int, local_devices: int, cpus: int | None = None) -> int:
    """Worker processes for one process's loader: `num_workers` is per device, as MMAction2's
    `workers_per_gpu` (8 GPUs x 8 workers there are 8 x 8 processes), capped by the CPUs this
    process may use (more processes than cores only add switching and memory). 0 stays 0:
    loading in the trainer's process, with read threads."""
    if num_workers < 0:
        raise ValueError(f'num_workers must be >= 0, got {num_workers}')
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return min(num_workers * max(local_devices, 1), max(cpus or 1, 1))


def _prefetch(ds: grain.MapDataset, num_workers: int) -> grain.IterDataset:
    # grain's default read-ahead (16 threads, 500 elements) would keep every worker busy far
    # ahead of the trainer and starve XLA of the CPU; two batches ahead is enough.
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1 if num_workers else 2,
                                              prefetch_buffer_size=2))
    if num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers),
                            worker_init_fn=_exit_with_parent)
    return it


def train_dataset(dataset, pipeline: Sequence[Mapping[str, Any]], *, batch_size: int, seed: int,
                  num_workers: int = 0, shard_index: int = 0, shard_count: int = 1,
                  max_retries: int = 16, start_batch: int = 0) -> grain.IterDataset:
    """Endless training batches of `batch_size` (per process); iterate it for the iterator.

    Batch k is a pure function of (seed, k), so `start_batch` resumes the exact sequence.
    """
    if len(dataset) < batch_size * shard_count:
        raise ValueError(f'{dataset!r}: {len(dataset)} samples are fewer than one global batch '
                         f'of {batch_size} × {shard_count} processes.')
    ds = (grain.MapDataset.range(len(dataset)).shuffle(seed=seed).repeat(None)
          .random_map(TrainSample(dataset, pipeline, max_retries), seed=seed)
          .batch(batch_size, drop_remainder=True))
    if shard_count > 1:
        # One global order, cut into per-process batches taken in turn (as MMAction2's
        # DistributedSampler): global batch k is the same samples, with the same augmentation,
        # whatever the number of processes; each process loads only its own.
        ds = ds[shard_index::shard_count]
    return _prefetch(ds[start_batch:] if start_batch else ds, num_workers)


def eval_dataset(dataset, pipeline: Sequence[Mapping[str, Any]], *, batch_size: int,
                 num_workers: int = 0, shard_index: int = 0, shard_count: int = 1,
                 max_retries: int = 16) -> grain.IterDataset:
    """One ordered pass; every process yields the same number of (padded) batches."""
    per_shard = math.ceil(len(dataset) / shard_count)
    padded = math.ceil(per_shard / batch_size) * batch_size
    ds = (grain.MapDataset.range(padded)
          .map(EvalSample(dataset, pipeline, max_retries, shard_index, shard_count))
          .batch(batch_size))
    return _prefetch(ds, num_workers)


def steps_per_epoch(num_samples: int, global_batch_size: int) -> int:
    return max(num_samples // global_batch_size, 1)
