"""The sweep's command line: python -m lars_jax.sweep --config SWEEP.py --workdir DIR [--out DIR] [--quick]

The flags live in a FlagValues of their own, made afresh by every main() call: main can run twice
in one process, and lars_jax.main's --config/--workdir never collide with these.
"""
from __future__ import annotations

import logging as pylogging
import os
import sys
import time

from absl import flags, logging
from ml_collections import config_flags

from lars_jax import reporting
from lars_jax.sweep.cells import apply_quick
from lars_jax.sweep.report import RESULTS_JSON
from lars_jax.sweep.run import run_sweep
from lars_jax.errors import EXIT_USAGE, UserError
from lars_jax.workdir import check, read_json

USAGE = ("usage: python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py "
         "--workdir runs/sweep_fashion_mnist [--out DIR] [--quick]")


def _fail(message: str, code: int = EXIT_USAGE):
    """One line on stderr and the exit code lars_jax.main would give (lars_jax.errors)."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.exit(code)


def _usage_error(message: str):
    _fail(f"{message} ({USAGE})")


def define_flags(argv: list[str]) -> flags.FlagValues:
    """argv: where config_flags finds the --config.<field>=value overrides (it reads sys.argv otherwise)."""
    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "Sweep directory: one subdirectory per cell under cells/.", flag_values=fv)
    flags.DEFINE_string("out", None, "Where results.md/.json and the PNGs go (default: --workdir).", flag_values=fv)
    flags.DEFINE_bool("quick", False, "Apply the sweep config's `quick` overrides (a smoke run).", flag_values=fv)
    config_flags.DEFINE_config_file("config", None, "Sweep config file (experiments/sweeps/*.py).",
                                    flag_values=fv, lock_config=False, sys_argv=argv)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=fv)
    return fv


class CellProgress(pylogging.Filter):
    """Cells train quietly: besides the sweep's own line per cell and warnings, the console gets a
    cell's training line (lars_jax.reporting's) only when the sweep printed nothing for `quiet_seconds`,
    so that a long cell is not silent."""

    def __init__(self, quiet_seconds: float, clock=time.monotonic):
        super().__init__()
        self.quiet, self.clock = quiet_seconds, clock
        self.printed()

    def printed(self) -> None:
        self.last = self.clock()

    def filter(self, record) -> bool:
        if record.levelno >= pylogging.WARNING:
            return True
        if record.pathname == reporting.__file__ and self.clock() - self.last >= self.quiet:
            self.printed()
            return True
        return False


def quick_over_full_results(out: str) -> str | None:
    """Why a --quick run must not write into `out` (it holds a full sweep's results), or None."""
    doc = read_json(os.path.join(out, RESULTS_JSON)) or {}
    name = doc.get("sweep")
    if name is None or name.endswith("_quick"):
        return None
    return (f"--quick: --out {out} holds the results of the full sweep {name!r}, which a smoke run would "
            f"overwrite; pass another --out (e.g. runs/sweep_quick) or drop --quick")


def main(argv=None) -> int:
    argv = list(argv or sys.argv)
    fv = define_flags(argv)
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print(USAGE + "\n\n" + fv.get_help())
        return 0
    try:
        rest = fv(argv)
    except flags.Error as e:
        _usage_error(str(e).splitlines()[0])
    if len(rest) > 1:
        _usage_error(f"unexpected arguments {rest[1:]}")
    config = fv.config
    try:
        config.keys()
    except OSError as e:  # config_flags defers a missing file's error to the first read
        _usage_error(f"--config: {str(e).strip().splitlines()[-1].strip()}")
    except Exception as e:  # noqa: BLE001 - anything else the sweep config file raised
        _usage_error(f"--config: {type(e).__name__}: {e}")
    sweep = apply_quick(config) if fv.quick else config
    out = fv.out or fv.workdir
    for flag, path in (("--workdir", fv.workdir), ("--out", out)):
        try:
            check(path, flag)
        except UserError as e:
            _fail(str(e), e.exit_code)
    refusal = quick_over_full_results(out) if fv.quick else None
    if refusal:
        _fail(refusal)
    if not flags.FLAGS.is_parsed():  # absl logging otherwise warns that it logs before flag parsing
        flags.FLAGS.mark_as_parsed()
    pylogging.getLogger().setLevel(pylogging.WARNING)
    logging.set_verbosity(logging.INFO)  # for CellProgress to choose from: the sweep prints one line per cell
    logging.use_absl_handler()
    handler = logging.get_absl_handler()
    for old in [f for f in handler.filters if isinstance(f, CellProgress)]:  # main() may run twice in a process
        handler.removeFilter(old)
    progress = CellProgress(sweep.base.loop.log_every_seconds or float("inf"))
    handler.addFilter(progress)

    def log(line: str) -> None:
        progress.printed()
        print(line, flush=True)

    import jax
    log(f"sweep {sweep.name}: {len(jax.devices())} {jax.devices()[0].platform} device(s); workdir {fv.workdir}")
    try:
        run_sweep(sweep, fv.workdir, fv.out, log=log)
    except UserError as e:
        _fail(str(e), e.exit_code)
    return 0
