"""Checkpoints of the TrainState through orbax's CheckpointManager (async writes, keep the last N).

The data iterator needs no state of its own: the batch of step k is a function of (seed, k), so
the restored `state.step` is the iterator's position.
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointManager:
    def __init__(self, workdir: str, *, keep: int = 2):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore_latest(self, state):
        """`state` restored from the latest checkpoint, with `state`'s shardings; unchanged if none."""
        step = self.latest_step()
        if step is None:
            return state
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def save(self, step: int, state) -> None:
        """Starts an asynchronous save; a step already saved is skipped."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def read_checkpoint(workdir: str, step: int | None = None) -> dict:
    """The TrainState saved in workdir (latest step when None) as a nested dict of numpy arrays,
    whatever devices or processes wrote it, without building a model: for analysis and tests."""
    directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    with ocp.CheckpointManager(directory) as manager:
        step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    path = os.path.join(directory, str(step), "default")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
