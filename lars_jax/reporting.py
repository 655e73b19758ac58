"""What the training loop measures and reports: when to act, how fast it runs, what the console
and TensorBoard show.

`due` says whether a periodic action falls on a step; `LineClock` whether a console line is due
between those of `log_every`; `Meter` keeps the run's seconds and images
(across resumed invocations: it starts from the progress saved with the checkpoint) and gives
images/s and the ETA; `Reporter` writes TensorBoard summaries (process 0 only) at `log_every` steps
and the console lines; `QuietLibraries` keeps other libraries' INFO records off the console
(`show_progress` sets that up where `python -m lars_jax.main` does not: a notebook, a script).
The loop itself, and the gradient noise scale's tail average, are lars_jax.loop's.
"""
from __future__ import annotations

import logging as pylogging
import math
import os
import time

import numpy as np
from absl import logging

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class QuietLibraries(pylogging.Filter):
    """The console shows lars_jax's own lines and other libraries' warnings; orbax's records are
    dropped (lars_jax reports checkpoint failures itself, in one line)."""

    def filter(self, record) -> bool:
        if record.pathname.startswith(_PACKAGE_DIR):
            return True
        return record.levelno >= pylogging.WARNING and "/orbax/" not in record.pathname


def show_progress() -> None:
    """Where no `python -m lars_jax.main` sets up the console (a notebook, a script): the loop's
    lines are shown, other libraries' only from warnings up."""
    logging.set_verbosity(logging.INFO)
    absl_logger = pylogging.getLogger("absl")
    if not any(isinstance(f, QuietLibraries) for f in absl_logger.filters):
        absl_logger.addFilter(QuietLibraries())


def due(step: int, every: int | None) -> bool:
    """True when a periodic action with period `every` (None or 0: never) falls on `step`."""
    return bool(every) and step % every == 0


class LineClock:
    """When the console gets a line besides those of `log_every`: after the first step of an
    invocation (which compiles), then whenever `every_seconds` (None: never) have passed since the
    last line. It reads the host's clock only, so deciding never waits for the device."""

    def __init__(self, every_seconds: float | None, clock=time.monotonic):
        self.every, self.clock, self.last = every_seconds, clock, None

    def due(self) -> bool:
        return self.last is None or bool(self.every) and self.clock() - self.last >= self.every

    def seconds_left(self) -> float | None:
        """Until the next line is due (None: never), at least a second once it is: a step slower
        than the interval is then asked about once a second, not in a busy loop."""
        if self.last is not None and not self.every:
            return None
        return max(1.0, 0.0 if self.last is None else self.every - (self.clock() - self.last))

    def printed(self) -> None:
        self.last = self.clock()


class Meter:
    """Wall-clock bookkeeping of the train loop. The first step of an invocation compiles, so its
    time is `compile_seconds` and its images count in no throughput; `progress` (a checkpoint's)
    carries the seconds and images of the invocations before this one."""

    def __init__(self, global_batch_size: int, progress: dict | None = None):
        progress = progress or {}
        self.batch = global_batch_size
        self.train_seconds = float(progress.get("train_seconds", 0.0))
        self.images = int(progress.get("images_seen", 0))
        self.compile_seconds = 0.0
        self._mark = time.perf_counter()
        self._compiled = False
        self.last_window_seconds_per_step = math.nan

    def stepped(self, block_on=None) -> None:
        """Call after each train step; `block_on` (the new state) is waited for after the first."""
        if not self._compiled:
            import jax
            jax.block_until_ready(block_on)
            now = time.perf_counter()
            self.compile_seconds, self._mark, self._compiled = now - self._mark, now, True

    def close_window(self, steps: int) -> float:
        """Ends the current window, in which the device finished `steps` train steps (the compiling
        one not counted): returns its images/s (nan if none)."""
        now = time.perf_counter()
        seconds = now - self._mark
        self._mark = now
        if not steps:
            return math.nan
        self.train_seconds += seconds
        self.images += steps * self.batch
        self.last_window_seconds_per_step = seconds / steps
        return steps * self.batch / seconds

    def restart_window(self) -> None:
        """Excludes the time since the last window (evaluation, checkpoint writes) from training."""
        self._mark = time.perf_counter()

    def images_per_second(self) -> float:
        return self.images / self.train_seconds if self.train_seconds else math.nan

    def eta(self, remaining_steps: int) -> float:
        return remaining_steps * self.last_window_seconds_per_step

    def progress(self, **extra) -> dict:
        """What a checkpoint saves for a resumed run to report (JSON-able)."""
        return {"train_seconds": self.train_seconds, "images_seen": self.images, **extra}


def hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Reporter:
    """TensorBoard summaries (process 0 writes, the others write nothing) and console lines."""

    def __init__(self, workdir: str, *, is_main: bool, total_steps: int, steps_per_epoch: int,
                 layer_stats_every: int):
        from lars_jax import summaries

        self.writer = summaries.EventWriter(workdir if is_main else None)
        self.total, self.spe, self.layer_every = total_steps, steps_per_epoch, layer_stats_every

    def hparams(self, flat: dict) -> None:
        self.writer.write_hparams({k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))})

    def train(self, window: list[tuple[int, dict]], images_per_second: float) -> dict:
        """Writes one log window of fetched (step, metrics) pairs: means of loss/accuracy and the
        last step's learning rate and norms at the window's last step, and the per-layer statistics
        of every step that computed them. Returns the scalars."""
        step, last = window[-1]
        scalars = {"train_loss": float(np.mean([m["loss"] for _, m in window])),
                   "train_accuracy": float(np.mean([m["accuracy"] for _, m in window])),
                   "learning_rate": float(last["learning_rate"]), "grad_norm": float(last["grad_norm"]),
                   "param_norm": float(last["param_norm"])}
        if math.isfinite(images_per_second):
            scalars["images_per_second"] = images_per_second
        if "noise_scale" in last:  # the bias-corrected averages at the window's last step
            ns = last["noise_scale"]
            scalars.update({"gns/b_simple": float(ns["b_simple"]), "gns/grad_sq": float(ns["avg_grad_sq"]),
                            "gns/trace_sigma": float(ns["avg_trace_sigma"])})
        self.writer.write_scalars(step, scalars)
        for s, m in window:
            if due(s, self.layer_every):
                self.writer.write_scalars(s, {f"layers/{k}": float(v) for k, v in m["layers"].items()})
        return scalars

    def line(self, fetched: list[tuple[int, dict]], images_per_second: float, eta_seconds: float,
             first_step_seconds: float | None = None) -> None:
        """One console line for the steps fetched since the previous line: their mean loss and
        accuracy, the last one's learning rate; after an invocation's first step, its time."""
        step, last = fetched[-1]
        first = (f"  first step {first_step_seconds:.1f} s (loading the data and compiling)"
                 if first_step_seconds is not None else "")
        logging.info("step %d/%d (epoch %.2f)  loss %.4f  acc %.3f  lr %.4g  %s img/s  ETA %s%s", step, self.total,
                     step / self.spe, np.mean([m["loss"] for _, m in fetched]),
                     np.mean([m["accuracy"] for _, m in fetched]), float(last["learning_rate"]),
                     f"{images_per_second:,.0f}" if math.isfinite(images_per_second) else "?", hms(eta_seconds),
                     first)

    def eval(self, step: int, metrics: dict) -> None:
        """metrics: {split_accuracy, split_loss, split_examples} for the splits evaluated."""
        self.writer.write_scalars(step, {k: v for k, v in metrics.items() if not k.endswith("_examples")})
        splits = [k[:-len("_accuracy")] for k in metrics if k.endswith("_accuracy")]
        logging.info("eval at step %d (epoch %.2f): %s", step, step / self.spe, "; ".join(
            f"{s} accuracy {metrics[s + '_accuracy']:.4f}  loss {metrics[s + '_loss']:.4f}  "
            f"({metrics[s + '_examples']} examples)" for s in splits))

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
