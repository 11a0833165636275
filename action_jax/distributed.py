"""Multi-host set-up: jax.distributed from the launcher, SLURM, MMAction2 variables, or nothing.

JAX runs one process per host driving all of that host's accelerators (the train step is one
program over the global device mesh); several processes per host also work, each restricted to
its own GPUs. See `action_jax/launch.py` and `launch/*.sh`.
"""
import os
import re

import jax
from absl import logging


def _tasks_per_node(spec: str) -> list[int]:
    """SLURM's compressed task counts ('2(x3),1') -> [2, 2, 2, 1]."""
    counts = []
    for part in spec.split(','):
        m = re.fullmatch(r'\s*(\d+)(?:\(x(\d+)\))?\s*', part)
        if not m:
            raise ValueError(f'Cannot parse SLURM tasks per node {spec!r}.')
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def _id_list(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(',') if v.strip()]


def slurm_local_device_ids(env=os.environ) -> list[int] | None:
    """The GPUs (indices into the task's visible ones) a SLURM task drives; [] means all of
    them, None leaves JAX's default.

    JAX's default under SLURM is `[SLURM_LOCALID]`, one GPU per task: right for one task per
    GPU on GPUs visible to every task, wrong for JAX's usual one task per node (it would drive
    GPU 0 only) and for tasks whose GPUs srun already bound (`--gpus-per-task`, `--gpu-bind`).
    Here: one task on this node -> all its GPUs; tasks that each see fewer GPUs than the node
    has -> all of theirs; otherwise the node's GPUs split evenly among its tasks by local id.
    `JAX_LOCAL_DEVICE_IDS=0,1` overrides all of this (JAX reads it itself).
    """
    if env.get('JAX_LOCAL_DEVICE_IDS'):
        return None
    spec = env.get('SLURM_STEP_TASKS_PER_NODE') or env.get('SLURM_TASKS_PER_NODE')
    if not spec:
        return None
    counts = _tasks_per_node(spec)
    node = int(env.get('SLURM_NODEID', '0'))
    tasks_here = counts[node] if node < len(counts) else counts[-1]
    if tasks_here == 1:
        return []
    visible = _id_list(env.get('CUDA_VISIBLE_DEVICES'))
    if visible is None:
        return None
    node_gpus = _id_list(env.get('SLURM_STEP_GPUS') or env.get('SLURM_JOB_GPUS'))
    if (node_gpus is not None and len(visible) < len(node_gpus)) or len(visible) < tasks_here:
        return []  # srun bound GPUs to tasks already
    if len(visible) % tasks_here:
        raise ValueError(f'{len(visible)} GPUs (CUDA_VISIBLE_DEVICES={",".join(visible)}) do not '
                         f'split evenly among the {tasks_here} tasks of this node.')
    per = len(visible) // tasks_here
    local = int(env.get('SLURM_LOCALID', '0'))
    return list(range(local * per, (local + 1) * per))


def initialize() -> None:
    """Initialises jax.distributed when the environment describes several processes.

    In this order:
    - `JAX_NUM_PROCESSES`/`JAX_PROCESS_ID` with `MASTER_ADDR`/`PORT` (what action_jax.launch
      sets for each process it starts).
    - A SLURM job step of several tasks (`srun`): JAX reads the topology from SLURM; the
      coordinator is the step's first node, on `JAX_COORDINATOR_PORT` if set (else a port
      derived from the job id). GPUs per task: see `slurm_local_device_ids`.
    - `NNODES` > 1 with `NODE_RANK`/`MASTER_ADDR`/`PORT` (MMAction2's dist_train.sh variables):
      `python -m action_jax.main` run by hand on each node, one process per node.
    - Otherwise a plain single process.
    """
    env = os.environ
    address = f"{env.get('MASTER_ADDR') or '127.0.0.1'}:{env.get('PORT') or '29500'}"
    if 'JAX_NUM_PROCESSES' in env:
        num = int(env['JAX_NUM_PROCESSES'])
        if num <= 1:
            return
        jax.distributed.initialize(address, num_processes=num,
                                   process_id=int(env['JAX_PROCESS_ID']))
    elif ('SLURM_STEP_NODELIST' in env  # a task of an srun step, not the batch script
          and int(env.get('SLURM_STEP_NUM_TASKS', env.get('SLURM_NTASKS', '1'))) > 1):
        ids = slurm_local_device_ids(env)
        jax.distributed.initialize(**({} if ids is None else {'local_device_ids': ids}))
    elif int(env.get('NNODES', '1')) > 1:
        jax.distributed.initialize(address, num_processes=int(env['NNODES']),
                                   process_id=int(env.get('NODE_RANK', '0')))
    else:
        return
    logging.info('jax.distributed: process %d of %d, %d local / %d global devices.',
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
