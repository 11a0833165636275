"""Data parallelism over every device of every host: one 'data' mesh axis.

The batch is sharded along 'data'; parameters and optimizer state are replicated, so XLA turns
the gradient mean (and BatchNorm's batch statistics) into all-reduces over the global batch.
"""
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def create_mesh() -> jax.sharding.Mesh:
    return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P('data'))


def global_batch(local_batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """Process-local batch (this host's shard) -> global arrays sharded along 'data'."""
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def replicate(tree, mesh):
    return jax.device_put(tree, replicated(mesh))


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every process."""
    if getattr(x, 'is_fully_addressable', True):
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
