"""Running a sweep: every cell a normal `train.train_and_evaluate` in its own workdir, resumable."""
from __future__ import annotations

import json
import os
import time

import ml_collections

from lars_jax.errors import ConfigError, NonFiniteLossError
from lars_jax.sweep.events import read_scalars
from lars_jax.workdir import read_json, write_text

from lars_jax.sweep.cells import (Cell, cell_config, check, extra_seed_batches, optimizer_config, plan,
                                  selection_score)
from lars_jax.sweep.report import write_outputs


def run_cell(cell: Cell, workdir: str, num_train: int) -> dict:
    """Trains one cell unless its workdir already holds a result; returns the cell's record."""
    from lars_jax import train

    cell_dir = os.path.join(workdir, "cells", cell.name)
    record = read_json(os.path.join(cell_dir, "sweep_cell.json"))
    if record is not None:
        record["skipped"] = True
        return record
    t0 = time.time()
    batches = train.batch_plan(cell.config, num_train)  # the Trainer's own plan, known for a diverged cell too
    status, message, results = "ok", "", {}
    try:
        results = train.train_and_evaluate(cell.config, cell_dir)
    except NonFiniteLossError as e:
        status, message = "diverged", str(e).split(";")[0]
    if results.get("preempted"):
        raise KeyboardInterrupt(f"cell {cell.name} was stopped by SIGTERM")
    record = {
        "cell": cell.name, "optimizer": cell.optimizer, "batch_size": cell.batch_size,
        "lr_multiplier": cell.lr_multiplier, "seed": cell.seed,
        "base_learning_rate": cell.config.schedule.base_learning_rate, "lr_scaling": cell.config.schedule.lr_scaling,
        "base_batch_size": cell.config.schedule.base_batch_size, "peak_learning_rate": batches.peak_learning_rate,
        "status": status, "message": message,
        "validation_accuracy": results.get("validation_accuracy"), "validation_loss": results.get("validation_loss"),
        "test_accuracy": results.get("test_accuracy"), "test_loss": results.get("test_loss"),
        "train_loss": results.get("train_loss"), "final_step": results.get("final_step"),
        "steps_per_epoch": batches.steps_per_epoch, "epochs": results.get("epochs"),
        "wall_seconds": time.time() - t0, "images_per_second": results.get("images_per_second"),
        "workdir": cell_dir, "skipped": False, "noise_scale": results.get("noise_scale"),
        # the curves the critical-batch fit and the noise-scale plot read, from the TensorBoard events
        **_curves(cell_dir),
    }
    os.makedirs(cell_dir, exist_ok=True)
    write_text(os.path.join(cell_dir, "sweep_cell.json"), json.dumps(record, indent=2))
    return record


def _curves(cell_dir: str) -> dict:
    if not os.path.exists(cell_dir):
        return {"train_loss_curve": [], "b_simple_curve": []}
    series = read_scalars(cell_dir, "")
    return {"train_loss_curve": series.get("train_loss", []), "b_simple_curve": series.get("gns/b_simple", [])}


def check_cells(sweep, info) -> None:
    """Builds (without compiling) the Trainer of every (optimizer, batch) pair's first cell: a config
    that cannot work is a ConfigError naming the cell before any cell runs. (The LR multipliers and
    seeds change no check: cells.check holds them.)"""
    from lars_jax import train

    for opt, b in plan(sweep):
        try:
            config = cell_config(sweep, opt, b, sweep.optimizers[opt].lr_multipliers[0], sweep.seeds[0], info.num_train)
        except ValueError as e:  # the batch against the train split: batching.steps_per_epoch's message
            raise ConfigError(f"sweep.batch_sizes: {e}") from e
        try:
            train.Trainer(config, info=info)
        except ConfigError as e:
            sources = ["sweep.base", f"sweep.optimizers.{opt}.overrides", "sweep.batch_sizes"]
            if config.mesh.microbatches != optimizer_config(sweep, opt).mesh.microbatches:
                sources.append("sweep.noise_scale_microbatches" if b in sweep.get("noise_scale_batch_sizes", ())
                               else "sweep.max_microbatch_size")
            raise ConfigError(f"sweep cell {opt} at batch {b:,} ({', '.join(sources)}): {e}") from e


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, out: str | None = None, *, log=print) -> dict:
    """Checks the sweep and every cell's config, then runs (or resumes) every cell; rewrites the
    outputs in `out` after each; returns the summary."""
    from lars_jax import data

    out = out or workdir
    check(sweep)
    info = data.get_info(sweep.base.data)
    check_cells(sweep, info)
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    num_train = info.num_train
    t0 = time.time()
    records: list[dict] = []
    extra_batches = extra_seed_batches(sweep)

    def run(opt, b, mult, seed):
        cell = Cell(opt, b, float(mult), int(seed), cell_config(sweep, opt, b, mult, seed, num_train))
        rec = run_cell(cell, workdir, num_train)
        records.append(rec)
        val, acc = rec["validation_accuracy"], rec["test_accuracy"]
        log(f"[{time.time() - t0:7.1f}s] {rec['cell']:<44} peak LR {rec['peak_learning_rate']:<8.4g} "
            + (f"val {val:.4f} test {acc:.4f}" if acc is not None and val is not None else rec["status"])
            + ("  (done before: skipped)" if rec["skipped"] else f"  {rec['wall_seconds']:.1f}s"))
        write_outputs(sweep, records, out, sweep_seconds=time.time() - t0, num_train=num_train, log=None)
        return rec

    for opt, b in plan(sweep):
        spec = sweep.optimizers[opt]
        first_seed = sweep.seeds[0]
        trials = [run(opt, b, m, first_seed) for m in spec.lr_multipliers]
        best = max(trials, key=selection_score)
        for seed in list(sweep.seeds[1:]) + (list(sweep.extra_seeds) if b in extra_batches else []):
            run(opt, b, best["lr_multiplier"], seed)
    return write_outputs(sweep, records, out, sweep_seconds=time.time() - t0, num_train=num_train, log=log)
