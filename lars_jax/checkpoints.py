"""Checkpoints of the TrainState that verify themselves: orbax's CheckpointManager plus a digest.

Each step directory `checkpoints/<step>/` holds two orbax items written together: `state` (the
TrainState) and `meta` (JSON): a 64-bit digest of every array, the fingerprint of what shapes the
state (the config fields that do, and the state's shapes and dtypes), and the loop's progress
(train loss, seconds, images seen), so that a run resumed at its last step reports what the
uninterrupted run would.

The digest is computed on the devices, in one jitted pass over the state (two weighted sums of
each array's bits modulo 2^32, with odd weights: any change to one word changes both), so saving
costs no extra device-to-host copy. Restoring recomputes it on the restored arrays. The newest
checkpoint that is readable and matches its digest is restored; each newer one that is not
(corrupt, truncated, half written, empty) is moved to `checkpoints_corrupt/<step>/` with a
one-line warning naming the step and why. Nothing is deleted except by the keep-newest-N rule.

The data iterator needs no state of its own: the batch of step k is a function of (seed, k), so
the restored `state.step` is the iterator's position.
"""
from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from lars_jax.errors import CheckpointError, ConfigError
from lars_jax.workdir import free_space

CORRUPT_DIR = "checkpoints_corrupt"
_K1, _K2 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA6B)  # odd multipliers (golden ratio, murmur3)


def _leaf_digest(x):
    """uint32 [2] of one array's bits: sums of word * odd weight, and of a bijective mix of the
    word * another odd weight, modulo 2^32 (uint32 sums wrap)."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        words = x.astype(jnp.uint32)
    elif x.dtype.itemsize == 8:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
    else:
        words = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(jnp.uint32)
    odd = jax.lax.iota(jnp.uint32, words.size) * np.uint32(2) + np.uint32(1)
    mixed = words ^ (words >> 16)
    return jnp.stack([jnp.sum(words * (odd * _K1), dtype=jnp.uint32), jnp.sum(mixed * (odd * _K2), dtype=jnp.uint32)])


@jax.jit
def _digests(tree):
    return jnp.stack([_leaf_digest(x) for x in jax.tree.leaves(tree)])


def digest(tree) -> dict[str, str]:
    """{leaf path: 16 hex digits} of a pytree of arrays (any sharding, any process count)."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
    if not paths:
        return {}
    values = _digests(tree)
    if values.is_fully_addressable:
        values = np.asarray(values)
    else:
        from jax.experimental import multihost_utils
        values = np.asarray(multihost_utils.process_allgather(values, tiled=True))
    return {p: f"{int(a):08x}{int(b):08x}" for p, (a, b) in zip(paths, values)}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


class CheckpointManager:
    """Asynchronous, verified checkpoints in `workdir/checkpoints`, the newest `keep` kept
    (None: all). `fingerprint`: a JSON-able dict of what shapes the state; a checkpoint written
    under another fingerprint is refused, naming the fields that differ."""

    def __init__(self, workdir: str, *, keep: int | None = 2, fingerprint: dict | None = None):
        if keep is not None and keep < 1:
            raise ConfigError(f"config.loop.keep_checkpoints: must be >= 1 or None (keep all), got {keep}")
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.fingerprint = fingerprint or {}
        self._pending: int | None = None  # step of the save in flight, until its errors are checked
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    # ------------------------------------------------------------------------------- restore
    def restore_latest(self, state):
        """(state restored from the newest intact checkpoint with `state`'s shardings, its
        progress dict), or (state, {}) if there is none. Raises ConfigError when the checkpoint
        belongs to another config, CheckpointError when checkpoints exist but none is intact."""
        bad = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception as e:  # noqa: BLE001 - any unreadable metadata means "not intact"
                bad.append((step, f"its metadata is unreadable ({_one_line(e)})"))
                continue
            self._check_fingerprint(meta.get("fingerprint", {}))
            restored, why = self._restore_verified(step, state, meta)
            if why is None:
                self._quarantine(bad)
                return restored, meta.get("progress", {})
            bad.append((step, why))
        self._quarantine(bad)
        if bad:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: "
                + "; ".join(f"step {s}: {why}" for s, why in bad)
                + f". They were moved to {os.path.join(os.path.dirname(self.directory), CORRUPT_DIR)}; "
                  f"rerun to start from step 0, or put back a copy from a backup.")
        return state, {}

    def _restore_verified(self, step: int, like, meta: dict):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
            # a missing or short chunk raises above; one that decodes to other bits shows here
            got = digest(restored)
        except Exception as e:  # noqa: BLE001 - truncated, deleted or undecodable data
            return None, f"its data is unreadable ({_one_line(e)})"
        expected = meta.get("digest", {})
        wrong = [path for path, d in got.items() if expected.get(path) != d]
        if wrong:
            return None, (f"{len(wrong)} of {len(got)} arrays do not match the digest written with them "
                          f"(first: {wrong[0]})")
        return restored, None

    def _check_fingerprint(self, saved: dict) -> None:
        differ = [f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in self.fingerprint.items()
                  if k != "state_shapes" and saved.get(k) != v]
        if not differ and saved.get("state_shapes") != self.fingerprint.get("state_shapes"):
            differ = ["the state's array shapes or dtypes"]
        if differ:
            raise ConfigError(
                f"{self.directory} holds checkpoints of a different run ({'; '.join(differ)}); "
                f"use a new --workdir for this config, or rerun with the config that wrote them")

    def _quarantine(self, bad) -> None:
        """Moves unreadable or mismatching step directories out of orbax's reach (never deletes)."""
        if not bad:
            return
        target = os.path.join(os.path.dirname(self.directory), CORRUPT_DIR)
        if jax.process_index() == 0:
            os.makedirs(target, exist_ok=True)
            for step, why in bad:
                dest = os.path.join(target, str(step))
                suffix = 1
                while os.path.exists(dest):
                    dest, suffix = os.path.join(target, f"{step}.{suffix}"), suffix + 1
                shutil.move(os.path.join(self.directory, str(step)), dest)
                logging.warning("checkpoint step %d in %s is not intact: %s; moved to %s", step,
                                self.directory, why, dest)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("lars_jax checkpoints quarantined")
        self._manager.reload()

    # ---------------------------------------------------------------------------------- save
    def save(self, step: int, state, progress: dict | None = None) -> None:
        """Starts an asynchronous save of `state` and `progress` (JSON); a saved step is skipped.
        A failure of the previous save is raised here (CheckpointError) if not raised before."""
        self.wait()  # orbax would wait for the previous save anyway; this names its step if it failed
        if step in self._manager.all_steps():
            return
        meta = {"fingerprint": self.fingerprint, "digest": digest(state), "progress": progress or {}}
        try:
            self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                             meta=ocp.args.JsonSave(meta)))
        except Exception as e:  # noqa: BLE001 - the synchronous part (directories, metadata)
            raise self._write_error(step, e) from e
        self._pending = step

    def check(self) -> None:
        """Raises CheckpointError if the save in flight has finished with an error (never blocks)."""
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self.wait()

    def wait(self) -> None:
        """Blocks until the save in flight is written; CheckpointError if it failed."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()  # re-raises the writer thread's error, once
        except Exception as e:  # noqa: BLE001
            raise self._write_error(step, e) from e

    def _write_error(self, step: int, e: BaseException) -> CheckpointError:
        intact = [s for s in self._manager.all_steps() if s != step]
        previous = f"the previous checkpoint, step {max(intact)}, is intact" if intact else "no earlier checkpoint exists"
        return CheckpointError(f"writing the checkpoint of step {step} to {self.directory} failed "
                               f"({_one_line(e)}; {free_space(self.directory)}); {previous}. Free "
                               f"space there (or use another --workdir) and rerun the same command")

    def close(self) -> None:
        try:
            self._manager.close()
        except Exception:  # noqa: BLE001 - a failed save was already reported by wait()
            pass


def read_checkpoint(workdir: str, step: int | None = None) -> dict:
    """The TrainState saved in workdir (latest step when None) as a nested dict of numpy arrays,
    whatever devices or processes wrote it, without building a model: for analysis and tests."""
    directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    with ocp.CheckpointManager(directory) as manager:
        step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    path = os.path.join(directory, str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))
