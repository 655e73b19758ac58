"""Device mesh, shardings and global-batch assembly for synchronous data parallelism.

The mesh has one axis, `data`: the global batch is split over it and parameters are replicated
(the paper's Figure 1a). XLA inserts the gradient all-reduce when the jitted step reduces the
sharded batch's loss into replicated gradients.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all global devices (or `devices`), in jax.devices() order, axis `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest replicated."""
    return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Joins every process's local numpy batch {name: [local_b, ...]} into global jax arrays
    [local_b * process_count, ...] sharded over `data`. Each process passes a different shard."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def local_batch_size(global_batch_size: int) -> int:
    """Examples this process feeds per step; the global batch must divide over processes."""
    count = jax.process_count()
    if global_batch_size % count:
        raise ValueError(f"config.global_batch_size: {global_batch_size} does not divide over {count} processes")
    return global_batch_size // count
