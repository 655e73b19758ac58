"""What the training loop measures and reports: when to act, how fast it runs, what the console
and TensorBoard show.

`due` says whether a periodic action falls on a step; `LineClock` whether a console line is due
between those of `log_every`; `Meter` keeps the run's seconds and images
(across resumed invocations: it starts from the progress saved with the checkpoint) and gives
images/s and the ETA; `Reporter` writes TensorBoard summaries (process 0 only) at `log_every` steps
and the console lines; `QuietLibraries` keeps other libraries' INFO records off the console
(`show_progress` sets that up where `python -m lars_jax.main` does not: a notebook, a script);
`NoiseScaleTail` averages the gradient-noise-scale estimates of the run's last 20% of steps, with a
95% interval (`ratio_interval`). The loop itself is lars_jax.loop's.
"""
from __future__ import annotations

import logging as pylogging
import math
import os
import time

import numpy as np
from absl import logging

from lars_jax.noise_scale import b_simple_of

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class QuietLibraries(pylogging.Filter):
    """The console shows lars_jax's own lines and other libraries' warnings; orbax's records are
    dropped (lars_jax reports checkpoint failures itself, in one line), and so is asyncio's report
    of an orbax error that no one retrieved (a failed write's other fragments)."""

    def filter(self, record) -> bool:
        if record.pathname.startswith(_PACKAGE_DIR):
            return True
        if record.name == "asyncio" and _raised_in_orbax(record.exc_info):
            return False
        return record.levelno >= pylogging.WARNING and "/orbax/" not in record.pathname


def _raised_in_orbax(exc_info) -> bool:
    tb = exc_info[2] if exc_info else None
    while tb is not None:
        if "/orbax/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


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


class NoiseScaleTail:
    """The run's gradient-noise-scale estimates averaged over its last 20% of steps (steps after
    `tail_start`), kept across resumed invocations through the checkpoint's progress."""

    def __init__(self, stop_step: int, progress: dict | None = None):
        self.tail_start = stop_step - math.ceil(0.2 * stop_step)
        saved = (progress or {}).get("noise_scale_tail", {})
        if saved.get("tail_start") != self.tail_start:  # sums over another stop's window: not this one's
            saved = {}
        self.steps = int(saved.get("steps", 0))
        self.grad_sq = float(saved.get("grad_sq", 0.0))
        self.trace_sigma = float(saved.get("trace_sigma", 0.0))
        self.first = saved.get("first")  # the first step summed (later than tail_start + 1 after such a resume)
        # The tail cut into TAIL_BLOCKS runs of consecutive steps, each's sums kept: their spread gives
        # the interval of the average (batch means, as for any autocorrelated series).
        self.tail_length = stop_step - self.tail_start
        self.blocks = [list(b) for b in saved.get("blocks", [[0.0, 0.0, 0]] * TAIL_BLOCKS)]

    def add(self, fetched: list[tuple[int, dict]]) -> None:
        for step, m in fetched:
            if step > self.tail_start and "noise_scale" in m:
                self.first = step if self.first is None else self.first
                self.steps += 1
                grad_sq, trace_sigma = float(m["noise_scale"]["grad_sq"]), float(m["noise_scale"]["trace_sigma"])
                self.grad_sq += grad_sq
                self.trace_sigma += trace_sigma
                block = self.blocks[(step - self.tail_start - 1) * TAIL_BLOCKS // self.tail_length]
                block[0], block[1], block[2] = block[0] + grad_sq, block[1] + trace_sigma, block[2] + 1

    def progress(self) -> dict:
        return {"tail_start": self.tail_start, "first": self.first, "steps": self.steps, "grad_sq": self.grad_sq,
                "trace_sigma": self.trace_sigma, "blocks": self.blocks}

    def result(self) -> dict | None:
        """{b_simple, b_simple_interval, grad_sq, trace_sigma, steps, from_step} (means; b_simple None
        when |G|^2 <= 0), or None. b_simple_interval: [low, high], a 95% interval (`ratio_interval`
        over the tail's blocks); high None when it is unbounded; None when not computable."""
        if not self.steps:
            return None
        grad_sq, trace = self.grad_sq / self.steps, self.trace_sigma / self.steps
        b_simple = b_simple_of(grad_sq, trace)
        filled = [b for b in self.blocks if b[2]]
        interval = (ratio_interval([b[1] / b[2] for b in filled], [b[0] / b[2] for b in filled])
                    if b_simple is not None and sum(b[2] for b in filled) == self.steps else None)
        return {"b_simple": b_simple, "b_simple_interval": interval, "grad_sq": grad_sq, "trace_sigma": trace,
                "steps": self.steps, "from_step": self.first}


TAIL_BLOCKS = 10
# Student's t, 97.5% quantile, by degrees of freedom: a 95% two-sided interval from few blocks.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ratio_interval(numerators, denominators) -> list | None:
    """A 95% interval [low, high] for mean(numerators) / mean(denominators), from n >= 3 block
    means (e.g. of tr(Sigma) and |G|^2): the delete-one-block jackknife's standard error times
    Student's t with n - 1 degrees of freedom, low clipped at 0. [0, None] (unbounded) when a
    replicate's denominator is <= 0: the data cannot bound the ratio. None when n < 3 or the mean
    denominator is <= 0."""
    num, den = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    n = len(num)
    if n < 3 or den.mean() <= 0:
        return None
    ratio = num.mean() / den.mean()
    rest_den = (den.sum() - den) / (n - 1)
    if (rest_den <= 0).any():
        return [0.0, None]
    replicates = (num.sum() - num) / (n - 1) / rest_den
    se = float(np.sqrt((n - 1) / n * np.sum((replicates - replicates.mean()) ** 2)))
    half = _T975.get(n - 1, 1.96) * se
    return [max(0.0, float(ratio - half)), float(ratio + half)]
