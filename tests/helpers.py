"""Shared by the tests: small configs, a few in-process train steps, and `python -m lars_jax.main`
in subprocesses."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lars_jax import configs, parallel, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "fashion_mnist.py")
SMALL = ("--config.global_batch_size=64", "--config.schedule.warmup_epochs=0", "--config.loop.log_every=1",
         "--config.data.augment=False", "--config.loop.layer_stats_every=0")


def small_config(**overrides):
    """Fashion-MNIST, small_cnn, LARS at batch 64 without warmup or augmentation; `overrides` name
    a part's field with a double underscore (model__bn_group_size=8) or a top-level field."""
    c = configs.get_base_config()
    configs.merge(c, dict(global_batch_size=64, data=dict(name="fashion_mnist", augment=False),
                          model=dict(name="small_cnn"), optimizer=dict(name="lars", lars=dict(weight_decay=5e-4)),
                          schedule=dict(total_steps=10, warmup_epochs=0.0, base_learning_rate=2.0),
                          loop=dict(log_every=1, layer_stats_every=0)))
    for key, value in overrides.items():
        *parts, field = key.split("__")
        node = c
        for part in parts:
            node = node[part]
        node[field] = value
    return c


def steps_plan(config, steps_per_epoch: int, **kwargs):
    """train.batch_plan for a train split of exactly `steps_per_epoch` global batches."""
    return train.batch_plan(config, steps_per_epoch * config.global_batch_size, **kwargs)


def run_steps(config, n, devices=None):
    """(state, last metrics) as numpy after n train steps on `devices` (default: all)."""
    trainer = train.Trainer(config, mesh=parallel.make_mesh(devices, model=config.mesh.model))
    state = trainer.sharded_init_state()
    batches = trainer.train_batches(0)
    for _ in range(n):
        state, metrics = trainer.train_step(state, next(batches))
    return jax.device_get(state), jax.device_get(metrics)


def max_rel_diff(a_tree, b_tree) -> float:
    """max over leaves of max|a - b| / max|a|."""
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(a))), 1e-12))
               for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)))


def command(workdir, *overrides):
    return [sys.executable, "-m", "lars_jax.main", "--config", CONFIG, "--workdir", str(workdir), *SMALL,
            *overrides]


def environment(devices: int, **extra) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def run(workdir, *overrides, devices: int = 8, timeout: float = 300, env=None):
    return subprocess.run(command(workdir, *overrides), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=environment(devices, **(env or {})))


def start(workdir, *overrides, devices: int, log_path, **extra_env) -> subprocess.Popen:
    """A background run whose stdout+stderr go to log_path; SIGINT reaches it as it would a run
    started at a shell prompt."""
    log = open(log_path, "w")
    # This session may be a background job of a non-interactive shell, which ignores SIGINT; an
    # ignored signal stays ignored across exec, a handled one starts at its default there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(command(workdir, *overrides), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=environment(devices, **extra_env))
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_for(log_path, text, proc, timeout=240) -> None:
    """Until `text` appears in the log at log_path; fails if `proc` ends first or time runs out."""
    deadline = time.time() + timeout
    while text not in (log_path.read_text() if log_path.exists() else ""):
        assert time.time() < deadline and proc.poll() is None, log_path.read_text()[-2000:] if log_path.exists() else ""
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multiprocess_flags(port: int, num_processes: int, process_id: int, heartbeat: int = 10):
    return (f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
            f"--process_id={process_id}", f"--heartbeat_timeout_seconds={heartbeat}")


@contextlib.contextmanager
def mounted_tmpfs(path, size, *options):
    """A tmpfs of `size` at `path` (root only); skips the test where mounting is not allowed."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root; CI runs as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path) -> None:
    """Writes `path` in whole pages until its disk is full (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
