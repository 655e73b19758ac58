"""The parent of a multi-process run's worker, so that a worker killed from inside still ends with
one clear line.

When a peer dies, JAX's coordination service aborts the survivors (SIGABRT, a C++ stack dump)
within the heartbeat timeout; no Python code runs in the aborted process. This parent, which
imports neither JAX nor TensorFlow, runs `python -m lars_jax.main` with the same arguments as its
child, forwards SIGTERM / SIGINT to it, and, if the child dies by a signal, prints which process
stopped, the newest checkpoint in the workdir and how to resume, then exits EXIT_FAILURE.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from lars_jax.errors import EXIT_FAILURE

CHILD_ENV = "LARS_JAX_SUPERVISED"  # set in the child: it is the worker, not another parent


def flag_value(argv, name: str) -> str | None:
    """The value of --name=V or --name V in argv (None if absent)."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def wanted(argv) -> bool:
    """A multi-process run (coordinator address or auto-detection) that is not already a child."""
    multi = flag_value(argv, "coordinator_address") or "--distributed" in argv or "--distributed=true" in argv
    return bool(multi) and not os.environ.get(CHILD_ENV)


def newest_checkpoint(workdir: str | None) -> str:
    directory = os.path.join(workdir or ".", "checkpoints")
    try:
        steps = [int(n) for n in os.listdir(directory) if n.isdigit()
                 and os.path.exists(os.path.join(directory, n, "_CHECKPOINT_METADATA"))]
    except OSError:
        steps = []
    return f"step {max(steps)} in {directory}" if steps else f"none in {directory} (the run restarts from step 0)"


def _die_with_parent() -> None:
    """In the child: SIGKILL when the parent dies (Linux), so killing the parent kills the worker."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed parent
        pass


def supervise(argv) -> int:
    """Runs the worker; returns its exit code, or EXIT_FAILURE after one line if a signal killed it."""
    child = subprocess.Popen([sys.executable, "-m", "lars_jax.main", *argv[1:]], env={**os.environ, CHILD_ENV: "1"},
                             preexec_fn=_die_with_parent)
    for sig in (signal.SIGTERM, signal.SIGINT):  # a preemption notice is the worker's to handle
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    code = child.wait()
    if code >= 0:
        return code  # the worker finished, or printed its own one-line error
    process = flag_value(argv, "process_id")
    count = flag_value(argv, "num_processes")
    who = f"process {process} of {count}" if process is not None and count else "this process"
    cause = ("a peer stopped sending heartbeats or the coordinator went away (JAX's message is above)"
             if -code == signal.SIGABRT else "see the log above")
    sys.stderr.write(f"error: {who} stopped by {signal.Signals(-code).name}: {cause}; last checkpoint: "
                     f"{newest_checkpoint(flag_value(argv, 'workdir'))}; rerun the same command on every host "
                     f"to resume from it\n")
    return EXIT_FAILURE
