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
    """Host or single-device values (the same on every process) -> replicated global arrays."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    # With several processes device_put cannot target devices of other processes: each
    # process contributes its own (identical) copy to its local devices.
    def put(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)  # already global: reshard if needed
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
    return jax.tree.map(put, tree)


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every process."""
    if getattr(x, 'is_fully_addressable', True):
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
