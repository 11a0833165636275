"""Multi-host set-up: `jax.distributed` from SLURM, from MMAction2-style variables, or nothing."""
import os

import jax
from absl import logging


def initialize() -> None:
    """Initialises jax.distributed when the environment describes several processes.

    - SLURM (`SLURM_NTASKS` > 1): JAX detects the cluster itself.
    - `NNODES`/`NODE_RANK`/`MASTER_ADDR`/`PORT` (MMAction2's dist_train.sh variables), one
      process per node, or the launcher's `JAX_NUM_PROCESSES`/`JAX_PROCESS_ID`.
    - Otherwise a plain single process.
    """
    env = os.environ
    if int(env.get('SLURM_NTASKS', '1')) > 1:
        jax.distributed.initialize()
    elif 'JAX_NUM_PROCESSES' in env or int(env.get('NNODES', '1')) > 1:
        num = int(env.get('JAX_NUM_PROCESSES', env.get('NNODES', '1')))
        rank = int(env.get('JAX_PROCESS_ID', env.get('NODE_RANK', '0')))
        address = f"{env.get('MASTER_ADDR', '127.0.0.1')}:{env.get('PORT', '29500')}"
        jax.distributed.initialize(address, num_processes=num, process_id=rank)
    else:
        return
    logging.info('jax.distributed: process %d of %d, %d local / %d global devices.',
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
