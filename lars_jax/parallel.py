"""Device mesh, shardings and global-batch assembly for synchronous data parallelism.

The mesh has axes (`data`, `model`): the global batch is split over `data` and parameters are
replicated (the paper's Figure 1a), except that with `model` > 1 the large dense kernels are split
over `model` (Figure 1b).
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"
MIN_MODEL_SHARDED_SIZE = 2**18  # dense kernels at least this large are split over `model`


def make_mesh(devices=None, *, model: int = 1) -> Mesh:
    """A (data, model) mesh over all global devices (or `devices`): data = len(devices) / model.

    `model` > 1 splits the large dense kernels over that many devices (the paper's Figure 1b);
    the batch is split over `data` only. Device order from mesh_utils (topology-aware on TPU/GPU).
    """
    devices = jax.devices() if devices is None else list(devices)
    if model < 1 or len(devices) % model:
        raise ValueError(f"config.mesh.model: {model} does not divide the {len(devices)} devices")
    shape = (len(devices) // model, model)
    try:
        grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def data_size(mesh: Mesh) -> int:
    """Number of data-parallel workers: the size of the `data` axis."""
    return mesh.shape[DATA_AXIS]


def state_shardings(abstract_state, mesh: Mesh):
    """NamedShardings for a TrainState: dense kernels [in, out] of at least MIN_MODEL_SHARDED_SIZE
    elements (and their optimizer moments, which share the shape) split their output dimension
    over `model`; everything else is replicated."""
    model = mesh.shape[MODEL_AXIS]

    def spec(x):
        if (model > 1 and len(x.shape) == 2 and x.size >= MIN_MODEL_SHARDED_SIZE
                and x.shape[1] % model == 0):
            return NamedSharding(mesh, P(None, MODEL_AXIS))
        return NamedSharding(mesh, P())

    return jax.tree.map(spec, abstract_state)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, the rest replicated (also over `model`)."""
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


# XLA's default command-buffer types, plus CONVOLUTION (xla/debug_options_flags.cc).
GPU_COMMAND_BUFFER = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,DYNAMIC_SLICE_FUSION,CONVOLUTION"


def compiler_options(backend: str | None = None) -> dict:
    """XLA options for the train step on `backend` (None: JAX's default backend).

    GPU: command buffers (CUDA graphs) that hold the convolutions too. With XLA's default types a
    ResNet step runs as ~160 short graphs between cuDNN calls, and at small per-device batches the
    device waits for the host (docs/performance.md). Left to XLA where XLA_FLAGS sets
    xla_gpu_enable_command_buffer itself, or where this XLA does not know these types.
    """
    if (backend or jax.default_backend()) != "gpu" or "xla_gpu_enable_command_buffer" in os.environ.get(
            "XLA_FLAGS", ""):
        return {}
    return dict(_gpu_command_buffer_options())


@functools.cache
def _gpu_command_buffer_options() -> tuple:
    options = {"xla_gpu_enable_command_buffer": GPU_COMMAND_BUFFER}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - an XLA without these types: its own defaults
        return ()
    return tuple(options.items())
