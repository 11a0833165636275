"""Feeding the devices: batches put on them ahead of the step, and how long the step waited.

`DevicePrefetch` keeps the next batches already on the devices (as flax's examples'
`prefetch_to_device`), so the host-to-device copy of batch k+1 overlaps step k. It checkpoints
as the loader it wraps, positioned at the first batch the trainer has not taken yet.

`InputWait` measures the fraction of wall time the training loop spent waiting for batches:
near 1, the devices starve and more loader workers (or faster decoding) would speed training
up; near 0, the step is the bottleneck.
"""
import collections
import contextlib
import json
import time
from typing import Any, Callable, Iterator


class DevicePrefetch:
    """Iterates `put(batch)` for the batches of `host_iter`, `size` of them put ahead.

    `host_iter` is a grain DatasetIterator (or anything with get_state/close). `put` runs in
    the caller's thread: JAX copies to the devices asynchronously, so the copies of the
    batches ahead overlap the running step without a thread of our own.
    """

    def __init__(self, host_iter, put: Callable[[Any], Any], size: int = 2):
        if size < 1:
            raise ValueError(f'device prefetch size must be >= 1, got {size}')
        self._it, self._put, self._size = host_iter, put, size
        # (loader state before the batch, the batch on the devices)
        self._queue: collections.deque = collections.deque()

    def _enqueue(self) -> None:
        while len(self._queue) < self._size:
            state = self._it.get_state()
            try:
                batch = next(self._it)
            except StopIteration:
                return
            self._queue.append((state, self._put(batch)))

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        self._enqueue()
        if not self._queue:
            raise StopIteration
        batch = self._queue.popleft()[1]
        self._enqueue()
        return batch

    def get_state(self) -> bytes:
        """The wrapped loader's state before the first batch not yet returned, in the form
        grain's checkpoint handler takes from an iterator that is not a DatasetIterator."""
        state = self._queue[0][0] if self._queue else self._it.get_state()
        return json.dumps(state, indent=4).encode()

    def close(self) -> None:
        self._queue.clear()
        self._it.close()


class InputWait:
    """Accumulates the time spent in `waiting()` blocks; `fraction()` gives its share of the
    wall time since the previous call (the logging interval)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._since = clock()
        self._waited = 0.0

    @contextlib.contextmanager
    def waiting(self):
        t0 = self._clock()
        try:
            yield
        finally:
            self._waited += self._clock() - t0

    def fraction(self) -> float:
        """Fraction of the time since the last call spent waiting; starts a new interval."""
        now = self._clock()
        elapsed, waited = now - self._since, self._waited
        self._since, self._waited = now, 0.0
        return min(waited / elapsed, 1.0) if elapsed > 0 else 0.0
