"""Starting `python -m lars_jax.main` in subprocesses for the end-to-end tests."""
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "fashion_mnist.py")
SMALL = ("--config.global_batch_size=64", "--config.warmup_epochs=0", "--config.log_every=1",
         "--config.augment=False", "--config.layer_stats_every=0")


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
    """A background run whose stdout+stderr go to log_path."""
    log = open(log_path, "w")
    return subprocess.Popen(command(workdir, *overrides), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=environment(devices, **extra_env))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multiprocess_flags(port: int, num_processes: int, process_id: int, heartbeat: int = 10):
    return (f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
            f"--process_id={process_id}", f"--heartbeat_timeout_seconds={heartbeat}")
