"""Feeding the devices: worker count rule, device prefetch, input-bound fraction."""
import json
import os
import time

import grain
import jax
import numpy as np
import pytest

from action_jax.data.loader import total_workers
from action_jax.train import sharding
from action_jax.train.input_pipeline import DevicePrefetch, InputWait


def test_num_workers_is_per_device_capped_by_the_cpus():
    assert total_workers(8, local_devices=8, cpus=128) == 64  # MMAction2: 8 per GPU
    assert total_workers(8, local_devices=8, cpus=16) == 16
    assert total_workers(2, local_devices=1, cpus=16) == 2
    assert total_workers(0, local_devices=8, cpus=16) == 0  # in-process loading stays so
    assert 1 <= total_workers(4, local_devices=2) <= os.cpu_count()  # this machine's CPUs
    with pytest.raises(ValueError, match='num_workers'):
        total_workers(-1, local_devices=1, cpus=4)


def _loader(n=12, batch=2):
    return iter(grain.MapDataset.range(n * batch).batch(batch).to_iter_dataset())


def test_device_prefetch_keeps_order_and_content_on_the_devices():
    mesh = sharding.create_mesh()
    devices = DevicePrefetch(_loader(), lambda b: sharding.global_batch({'x': b}, mesh), size=2)
    got = [np.asarray(b['x']) for b in devices]
    assert all(isinstance(b, np.ndarray) for b in got)
    np.testing.assert_array_equal(np.stack(got), np.arange(24).reshape(12, 2))
    one = next(iter(DevicePrefetch(_loader(), lambda b: sharding.global_batch({'x': b}, mesh))))
    assert isinstance(one['x'], jax.Array) and one['x'].sharding == sharding.data_sharded(mesh)


def test_device_prefetch_checkpoints_the_first_batch_not_taken():
    devices = DevicePrefetch(_loader(), lambda b: b, size=2)
    taken = [next(devices) for _ in range(3)]  # the loader itself is 5 batches in
    resumed = _loader()
    resumed.set_state(json.loads(devices.get_state()))
    np.testing.assert_array_equal(next(resumed), next(devices))
    np.testing.assert_array_equal(np.stack(taken), np.arange(6).reshape(3, 2))
    devices.close()


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_input_wait_fraction_is_the_waited_share_of_each_interval():
    clock = _FakeClock()
    wait = InputWait(clock)
    for _ in range(4):  # 3 s waiting for data, then 1 s of step, four times
        with wait.waiting():
            clock.now += 3.0
        clock.now += 1.0
    assert wait.fraction() == 0.75  # 12 / 16, exact in binary
    clock.now += 2.0  # a new interval: nothing waited
    assert wait.fraction() == 0.0


def _run(load_s: float, step_s: float, steps: int = 8) -> float:
    """The training loop's feeding on fake parts: a loader sleeping `load_s` per batch and a
    step sleeping `step_s`; returns the input-bound fraction."""
    def slow_loader():
        for i in range(steps + 2):
            time.sleep(load_s)
            yield i

    class Loader:  # the loader interface DevicePrefetch needs
        def __init__(self):
            self.it = slow_loader()

        def __next__(self):
            return next(self.it)

        def get_state(self):
            return {}

        def close(self):
            pass

    devices = DevicePrefetch(Loader(), lambda b: b)
    wait = InputWait()
    for _ in range(steps):
        with wait.waiting():
            next(devices)
        time.sleep(step_s)
    return wait.fraction()


def test_input_bound_when_loading_is_slower_than_the_step():
    assert _run(load_s=0.03, step_s=0.003) > 0.5
    assert _run(load_s=0.0, step_s=0.03) < 0.5
