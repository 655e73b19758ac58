"""The training loop, from a restored state to the results: train steps, the console lines and
summaries at their steps, evaluation, checkpoints, and a stop at SIGTERM / Ctrl-C with a checkpoint.

`run` is the loop: it takes the Trainer's compiled steps and data (lars_jax.train builds them from
the config) and a checkpoint manager, and returns the results. `evaluate` / `evaluate_all` go over
a whole split; `PreemptionWatch` says when a stop signal has arrived (in every process at the same
step); `computed` / `finished` ask the device which queued steps it has done without waiting.
What the loop measures and prints (Meter, LineClock, Reporter, the noise scale's NoiseScaleTail) is
lars_jax.reporting's.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time

import jax
from absl import logging

from lars_jax import data, parallel, supervisor
from lars_jax.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, NonFiniteLossError
from lars_jax.reporting import LineClock, Meter, NoiseScaleTail, Reporter, due
from lars_jax.resume import flatten


def run(trainer, state, start: int, ckpt, workdir: str, progress: dict, is_main: bool) -> dict:
    """The loop from `start` to trainer.plan.stop_step; returns the results dict (without wall time).

    trainer: lars_jax.train.Trainer's pieces: config, mesh, plan (a lars_jax.batching.BatchPlan),
    measures_noise_scale, the compiled train_step and eval_step, train_batches(start). state: the
    TrainState of step `start`; ckpt: a lars_jax.checkpoints.CheckpointManager; progress: its
    saved progress (the earlier invocations' seconds, images, noise-scale sums)."""
    config, plan = trainer.config, trainer.plan
    spe, stop = plan.steps_per_epoch, plan.stop_step
    eval_every, ckpt_every = config.loop.eval_every or spe, config.loop.checkpoint_every or spe
    meter = Meter(plan.global_batch, progress)
    report = Reporter(workdir, is_main=is_main, total_steps=plan.total_steps, steps_per_epoch=spe,
                      layer_stats_every=config.loop.layer_stats_every)
    if start == 0:
        report.hparams(flatten(config.to_dict()))
    logging.info("Training %s: steps %d to %d of %d (%d per epoch), global batch %d on %d devices in %d "
                 "processes", config.name, start, stop, plan.total_steps, spe, plan.global_batch,
                 trainer.mesh.size, jax.process_count())
    if config.loop.noise_scale_decay is not None and not trainer.measures_noise_scale:
        logging.info("Gradient noise scale not measured: one data-parallel device and one microbatch give one "
                     "batch size; it needs two (more devices, or config.mesh.microbatches > 1)")
    tail = NoiseScaleTail(stop, progress)
    preempted = PreemptionWatch()
    pending: list[tuple[int, dict]] = []  # device-side metrics not yet fetched
    window: list[tuple[int, dict]] = []  # fetched since the last log_every point (TensorBoard's window)
    lines = LineClock(config.loop.log_every_seconds)
    eval_metrics: dict = {}
    evaluated_at = None  # the step eval_metrics belong to
    train_loss = progress.get("train_loss", math.nan)
    batches = trainer.train_batches(start)
    step, stopped = start, False

    def line(n: int) -> float:
        """A console line for the first n pending steps (computed already); their images/s."""
        fetched = jax.device_get(pending[:n])
        del pending[:n]
        window.extend(fetched)
        first = fetched[0][0] == start + 1
        ips = meter.close_window(len(fetched) - first)
        report.line(fetched, ips, meter.eta(stop - fetched[-1][0]), meter.compile_seconds if first else None)
        lines.printed()
        return ips

    try:
        while step < stop:
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, metrics = trainer.train_step(state, next(batches))
            step += 1
            pending.append((step, metrics))
            meter.stepped(block_on=state)
            stopped = preempted(step)
            last = step == stop
            evaluate_now, save_now = last or due(step, eval_every), last or due(step, ckpt_every)
            summarize = stopped or evaluate_now or save_now or due(step, config.loop.log_every)
            if not summarize:  # a line at most: checks and summaries stay at the same steps on every process
                if lines.due() and (done := computed(pending)):
                    line(done)
                continue
            # The host runs ahead of the device: while it waits for the queued steps, a line whenever due.
            all_computed = finished(pending[-1][1])
            while not all_computed.wait(lines.seconds_left()):
                if 0 < (done := computed(pending)) < len(pending):
                    line(done)
            ips = line(len(pending))
            _check_finite(window, ckpt)  # before any checkpoint of them
            train_loss = report.train(window, ips)["train_loss"]
            tail.add(window)
            window.clear()
            progress = meter.progress(train_loss=train_loss, noise_scale_tail=tail.progress())
            ckpt.check()
            if stopped:
                ckpt.save(step, state, progress)
                ckpt.wait()
                logging.warning("%s: stopped at step %d/%d with a checkpoint in %s; run the same command "
                                "again to resume (exit code %d).", preempted.name or "SIGTERM", step, stop,
                                ckpt.directory, preempted.exit_code)
                break
            if evaluate_now:
                eval_metrics, evaluated_at = evaluate_all(trainer.eval_step, state, config, trainer.mesh,
                                                          final=last), step
                report.eval(step, eval_metrics)
            if save_now:
                ckpt.save(step, state, progress)
            meter.restart_window()
        ckpt.wait()
        if not eval_metrics and not stopped:  # resumed at the last step: evaluate what was restored
            eval_metrics, evaluated_at = evaluate_all(trainer.eval_step, state, config, trainer.mesh, final=True), step
            report.eval(step, eval_metrics)
    finally:
        preempted.close()
        report.close()
    return {
        "config_name": config.name, "final_step": step, "total_steps": plan.total_steps,
        "stop_step": stop, "finished": step == plan.total_steps, "epochs": plan.epochs(step), "preempted": stopped,
        "exit_code": preempted.exit_code if stopped else 0,
        "test_accuracy": eval_metrics.get("test_accuracy"), "test_loss": eval_metrics.get("test_loss"),
        "test_examples": eval_metrics.get("test_examples"), "evaluated_at_step": evaluated_at, "train_loss": train_loss,
        **{k: v for k, v in eval_metrics.items() if k.startswith("validation_")},
        "train_seconds": meter.train_seconds, "compile_seconds": meter.compile_seconds,
        "images_per_second": meter.images_per_second(), "global_batch_size": plan.global_batch,
        "num_devices": trainer.mesh.size, "num_processes": jax.process_count(), "resumed_from_step": start,
        "noise_scale": tail.result(), "plan": plan.as_dict(),
    }


def _check_finite(fetched, ckpt):
    for step, m in fetched:
        loss, norm = float(m["loss"]), float(m["param_norm"])
        if not (math.isfinite(loss) and math.isfinite(norm)):
            ckpt.wait()
            last = ckpt.latest_step()
            where = (f"the last good checkpoint is step {last} in {ckpt.directory}, left intact"
                     if last is not None else "no checkpoint was written yet")
            what = f"loss is {loss}" if not math.isfinite(loss) else f"the parameters' norm is {norm}"
            raise NonFiniteLossError(
                f"{what} at step {step}: training diverged; {where}. Lower config.schedule.base_learning_rate, "
                f"lengthen config.schedule.warmup_epochs, or check the data.")
    return fetched


def evaluate(eval_step, state, config, mesh, split: str = "eval") -> dict[str, float]:
    """Top-1 accuracy and mean loss over a whole split, each example exactly once:
    {test_accuracy, test_loss, test_examples} for split "eval" (the dataset's test split),
    {validation_...} for "validation" (config.data.validation_examples of the train split)."""
    eval_batch = config.loop.eval_batch_size or config.global_batch_size
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for local in data.eval_iterator(config.data, seed=config.seed, split=split,
                                    local_batch_size=parallel.local_batch_size(eval_batch),
                                    process_index=jax.process_index(), process_count=jax.process_count()):
        sums = jax.device_get(eval_step(state, parallel.global_batch(local, mesh)))
        for name in totals:
            totals[name] += float(sums[name])
    count, name = max(totals["count"], 1.0), "test" if split == "eval" else split
    return {f"{name}_accuracy": totals["correct"] / count, f"{name}_loss": totals["loss"] / count,
            f"{name}_examples": int(totals["count"])}


def evaluate_all(eval_step, state, config, mesh, *, final: bool) -> dict[str, float]:
    """The periodic evaluation: the validation split when there is one, else the test split; at
    the end (final) both."""
    validation = config.data.validation_examples > 0
    out = evaluate(eval_step, state, config, mesh, "validation") if validation else {}
    if final or not validation:
        out.update(evaluate(eval_step, state, config, mesh))
    return out


class PreemptionWatch:
    """Has SIGTERM (a preemption notice) or SIGINT (Ctrl-C) arrived? In a multi-process run every
    process must stop at the same step, so JAX's preemption sync point decides (a SIGINT is passed
    to it as SIGTERM); alone, a signal handler does. A second SIGINT raises KeyboardInterrupt at
    once; under lars_jax.supervisor, which forwards signals, one arriving within DUPLICATE_SECONDS
    of the first is the same Ctrl-C delivered twice (to the process group and forwarded)."""

    DUPLICATE_SECONDS = 0.5

    def __init__(self):
        self.name: str | None = None  # the first stop signal's name
        self._signalled_at = 0.0
        self._multi = jax.process_count() > 1
        self._window = self.DUPLICATE_SECONDS if os.environ.get(supervisor.CHILD_ENV) else 0.0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            wanted = [signal.SIGINT] if self._multi else [signal.SIGTERM, signal.SIGINT]
            for sig in wanted:  # a SIGINT ignored at start (a background job of a shell) stays ignored
                if sig == signal.SIGTERM or signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.name == "SIGINT" else EXIT_PREEMPTED

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.name is not None:
            if signum == signal.SIGINT and now - self._signalled_at > self._window:
                raise KeyboardInterrupt
            return
        self.name, self._signalled_at = signal.Signals(signum).name, now
        if self._multi:  # JAX's preemption notice listens for SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

    def __call__(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils
            return multihost_utils.reached_preemption_sync_point(step)
        return self.name is not None

    def close(self):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def computed(pending: list[tuple[int, dict]]) -> int:
    """How many of the pending (step, metrics on the device), oldest first, the device has
    computed. jax.Array.is_ready asks without waiting: the host, which runs ahead of the device,
    can print a line for the steps done so far."""
    done = 0
    for _, metrics in pending:
        if not all(leaf.is_ready() for leaf in jax.tree.leaves(metrics)):
            break
        done += 1
    return done


def finished(metrics) -> threading.Event:
    """An event set once the device has computed `metrics` (a pytree of jax.Arrays): waiting on it
    with a timeout, the loop can print lines while the device works through the steps queued."""
    event = threading.Event()
    threading.Thread(target=lambda: (jax.block_until_ready(metrics), event.set()), daemon=True).start()
    return event
