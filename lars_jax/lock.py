"""One run per workdir: an advisory lock (flock(2)) on `WORKDIR/lock`, held for the whole run.

The OS drops a flock when the process holding it ends, however it ends (kill -9 included), so a
lock is never stale and nothing needs cleaning up. The file names its holder (host, PID, start
time, command) for the refusal message; it stays after the run, unlocked, and the next holder
overwrites it. A multi-process job holds it once, in process 0, and every process learns
process 0's answer, so a refused job stops everywhere with the same line.

flock is advisory (only lars_jax honours it) and as reliable as the filesystem's locking: local
filesystems and NFS (Linux emulates flock with NFS byte-range locks) enforce it; where the
filesystem refuses locks (e.g. Lustre mounted without `-o flock`), one warning says one run per
workdir is not enforced there, and the run goes on.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time

from absl import logging

from lars_jax.errors import WorkdirBusyError, WorkdirError

LOCK = "lock"
_MESSAGE_BYTES = 2048  # the refusal broadcast to a job's other processes, utf-8, zero padded


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.orig_argv)}


def _describe(path: str) -> str:
    """Who holds the lock at `path`, from what it wrote there (it writes just after locking)."""
    for _ in range(20):
        try:
            with open(path) as f:
                who = json.load(f)
            command = who.get("command", "?")
            command = command if len(command) <= 200 else command[:197] + "..."
            return f"PID {who.get('pid', '?')} on {who.get('host', '?')} since {who.get('since', '?')}: {command}"
        except (OSError, ValueError):
            time.sleep(0.05)
    return "a process that has not yet named itself"


class Lock:
    """The workdir's lock, held until `release()` or the process's end."""

    def __init__(self, workdir: str, *, wait: bool = False):
        """Takes the lock, or raises WorkdirBusyError naming the holder; wait=True blocks until
        the holder ends instead."""
        self.path = os.path.join(workdir, LOCK)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise WorkdirError(f"--workdir {workdir}: cannot open its lock file {self.path} ({e.strerror or e}); "
                               f"choose a directory you can write, or fix its permissions") from e
        try:
            self._take(workdir, wait)
        except BaseException:
            self.release()
            raise

    def _take(self, workdir: str, wait: bool) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(self.path)
            if not wait:
                raise WorkdirBusyError(f"--workdir {workdir} is in use by another run ({holder}); wait for it to "
                                       f"end, add --wait_for_workdir to wait for it, or use another --workdir") from None
            logging.warning("--workdir %s is in use by another run (%s); waiting for it to end", workdir, holder)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            logging.warning("--workdir %s: this filesystem refuses file locks (%s); one run per workdir is not "
                            "enforced here", workdir, e.strerror)
            return
        text = json.dumps(_holder()).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError:  # a full disk: the lock holds all the same, the refusal names no one
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def hold_for_job(workdir: str, *, wait: bool = False) -> Lock | None:
    """The lock, taken by process 0 of the job (None elsewhere); when process 0 is refused
    (WorkdirBusyError) or cannot open the lock file, every process raises its WorkdirError."""
    import jax

    if jax.process_count() == 1:
        return Lock(workdir, wait=wait)
    import numpy as np
    from jax.experimental import multihost_utils

    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = Lock(workdir, wait=wait)
        except WorkdirError as e:
            error = e
    refusal = str(error or "").encode()[:_MESSAGE_BYTES]
    message = np.zeros(_MESSAGE_BYTES, np.uint8)
    message[:len(refusal)] = np.frombuffer(refusal, np.uint8)
    message = bytes(np.asarray(multihost_utils.broadcast_one_to_all(message))).rstrip(b"\0")
    if error is not None:
        raise error
    if message:
        raise WorkdirError(message.decode(errors="replace"))
    return lock
