"""The failures a user can cause and fix. `python -m lars_jax.main` prints their message as one line
on stderr, with no traceback, and exits non-zero (`EXIT_USAGE` for a config, `EXIT_FAILURE` else).

Every message names the cause (the field, file or directory) and the fix.
"""
from __future__ import annotations

EXIT_FAILURE = 1  # the run failed: data absent, diverged, a checkpoint unreadable or unwritable...
EXIT_USAGE = 2  # the command line or the config cannot work; nothing was run
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM with a checkpoint of the current step; rerun
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped by Ctrl-C (with a checkpoint of the current step after the first)


class UserError(Exception):
    """A failure the user can fix; the message says how."""
    exit_code = EXIT_FAILURE


class ConfigError(UserError, ValueError):
    """A config field that cannot work; the message names the field and how to fix it."""
    exit_code = EXIT_USAGE


class DataNotFoundError(UserError, FileNotFoundError):
    """The dataset's files are absent or unreadable; the message says exactly how to get them."""


class WorkdirError(UserError, OSError):
    """--workdir cannot be used (empty, not a directory, not writable): a command-line mistake."""
    exit_code = EXIT_USAGE


class WorkdirBusyError(WorkdirError):
    """Another run holds the workdir; the message names it (host, PID, since when)."""


class OutputError(UserError, OSError):
    """A file of the run's outputs could not be written (a full disk); the old file, if any, is intact."""


class CheckpointError(UserError, OSError):
    """A checkpoint could not be written or no intact one could be read; the message says which."""


class NonFiniteLossError(UserError, FloatingPointError):
    """Training diverged; the message names the step and the last good checkpoint."""
