"""Batch-size sweep: does LARS keep small-batch accuracy at a very large batch where SGD does not?

    python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py --workdir runs/sweep \
        [--out benchmarks/results/sweep_fashion_mnist] [--quick]

A sweep config (`experiments/sweeps/*.py`) names a base cell config, the batch sizes, the seeds and
the optimizers; each optimizer is a set of config overrides (optimizer, base LR, scaling rule) plus
`lr_multipliers`, the LR search done at every batch size (a single 1.0 = the scaling rule alone).
Every cell is a normal run of `train.train_and_evaluate` in its own workdir
(`WORKDIR/cells/<cell>/`: results.json, config.json, TensorBoard events), run one after another in
this process. At each (optimizer, batch) the search runs with the first seed and the multiplier
with the best final test accuracy is selected (there is no validation split: selection on the
test set, which flatters every searched optimizer; the output says which were searched); the
extra seeds then run with the selected LR at the batch sizes in `extra_seed_batch_sizes`.

A cell whose results.json exists is skipped, so rerunning the command resumes the sweep; a cell's
directory name carries a hash of its config, so a changed config runs new cells. A diverged cell
(NaN/Inf loss) is recorded as diverged, not retried. After every cell the outputs are rewritten
in `--out` (default: the workdir): `results.md` and `results.json` (every cell and the per-batch
summary), `accuracy_vs_batch.png`, and `trust_ratios.png` (per-layer LARS trust ratios of the
LARS runs at the smallest and largest batch, read back from their TensorBoard events).

The sweep's default model is `mlp` (lars_jax/models/small.py): a
784-512-256-10 perceptron with BatchNorm, because XLA's CPU convolution backward pass makes the
small CNN 15-30x slower per image on a 2-core machine (see experiments/sweeps/fashion_mnist_batch.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging as pylogging
import math
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_collections  # noqa: E402


RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
ACCURACY_PNG = "accuracy_vs_batch.png"
TRUST_PNG = "trust_ratios.png"
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Cells.

@dataclasses.dataclass(frozen=True)
class Cell:
    optimizer: str  # key in sweep.optimizers
    batch_size: int
    lr_multiplier: float
    seed: int
    config: ml_collections.ConfigDict = dataclasses.field(compare=False, hash=False)

    @property
    def name(self) -> str:
        digest = hashlib.sha1(self.config.to_json(sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.optimizer}_b{self.batch_size}_lrx{self.lr_multiplier:g}_s{self.seed}_{digest}"


def apply_quick(sweep: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The sweep with its `quick` overrides (a nested dict mirroring the sweep's fields) merged in."""
    sweep = ml_collections.ConfigDict(sweep.to_dict())

    def merge(node, overrides):
        for key, value in overrides.items():
            if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(node[key], ml_collections.ConfigDict):
                merge(node[key], value)
            else:
                node[key] = value

    merge(sweep, sweep.get("quick", {}))
    sweep.name = sweep.name + "_quick"
    return sweep


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    return num_train // batch_size  # the train split drops each epoch's incomplete last batch


def cell_config(sweep, optimizer: str, batch_size: int, lr_multiplier: float, seed: int,
                num_train: int) -> ml_collections.ConfigDict:
    """The full config of one run: base, then the optimizer's overrides, then batch/seed/LR."""
    spec = sweep.optimizers[optimizer]
    c = ml_collections.ConfigDict(sweep.base.to_dict())
    c.update(spec.overrides.to_dict())
    c.global_batch_size = batch_size
    c.seed = seed
    c.base_learning_rate = float(c.base_learning_rate) * float(lr_multiplier)
    spe = steps_per_epoch(num_train, batch_size)
    total = c.total_steps if c.total_steps is not None else max(1, round(c.num_epochs * spe))
    # About `log_points` logged points per run: TensorBoard curves (and LARS layer statistics,
    # logged at the same steps) without fetching every step's metrics.
    c.log_every = max(1, total // sweep.log_points)
    c.layer_stats_every = c.log_every
    c.checkpoint_every = 10**9  # only the final step: the sweep needs results, not resumable cells
    c.keep_checkpoints = 1
    c.name = f"{sweep.name}/{optimizer}_b{batch_size}_lrx{lr_multiplier:g}_s{seed}"
    return c


def peak_learning_rate(config) -> float:
    from lars_jax import schedules
    return schedules.scaled_learning_rate(config.base_learning_rate, config.global_batch_size,
                                          base_batch_size=config.base_batch_size, rule=config.lr_scaling)


# ----------------------------------------------------------------------------------------------
# Running.

def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_cell(cell: Cell, workdir: str, num_train: int) -> dict:
    """Trains one cell unless its workdir already holds a result; returns the cell's record."""
    from lars_jax import train

    cell_dir = os.path.join(workdir, "cells", cell.name)
    record = _read_json(os.path.join(cell_dir, "sweep_cell.json"))
    if record is not None:
        record["skipped"] = True
        return record
    if os.path.exists(cell_dir):  # an interrupted earlier attempt: start the cell afresh
        shutil.rmtree(cell_dir)
    t0 = time.time()
    status, message, results = "ok", "", {}
    try:
        results = train.train_and_evaluate(cell.config, cell_dir)
    except train.NonFiniteLossError as e:
        status, message = "diverged", str(e).split(";")[0]
    if results.get("preempted"):
        raise KeyboardInterrupt(f"cell {cell.name} was stopped by SIGTERM")
    spe = steps_per_epoch(num_train, cell.batch_size)
    record = {
        "cell": cell.name, "optimizer": cell.optimizer, "batch_size": cell.batch_size,
        "lr_multiplier": cell.lr_multiplier, "seed": cell.seed,
        "base_learning_rate": cell.config.base_learning_rate, "lr_scaling": cell.config.lr_scaling,
        "base_batch_size": cell.config.base_batch_size, "peak_learning_rate": peak_learning_rate(cell.config),
        "status": status, "message": message,
        "test_accuracy": results.get("test_accuracy"), "test_loss": results.get("test_loss"),
        "train_loss": results.get("train_loss"), "final_step": results.get("final_step"),
        "steps_per_epoch": spe, "epochs": results.get("epochs"),
        "wall_seconds": time.time() - t0, "images_per_second": results.get("images_per_second"),
        "workdir": cell_dir, "skipped": False,
    }
    os.makedirs(cell_dir, exist_ok=True)
    with open(os.path.join(cell_dir, "sweep_cell.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


def _num_train(config) -> int:
    from lars_jax import data
    return data.get_info(config).num_train


def plan(sweep) -> list[tuple[str, int]]:
    """(optimizer, batch) pairs in run order: batch sizes ascending, optimizers as listed."""
    return [(opt, b) for b in sorted(sweep.batch_sizes) for opt in sweep.optimizer_order]


def run_sweep(sweep: ml_collections.ConfigDict, workdir: str, out: str | None = None, *, log=print) -> dict:
    """Runs (or resumes) every cell; rewrites the outputs in `out` after each; returns the summary."""
    out = out or workdir
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    num_train = _num_train(sweep.base)
    t0 = time.time()
    records: list[dict] = []
    todo = plan(sweep)
    extra_batches = set(sweep.extra_seed_batch_sizes)
    if "ends" in extra_batches or not extra_batches:
        extra_batches = {min(sweep.batch_sizes), max(sweep.batch_sizes)} if sweep.extra_seeds else set()

    def run(opt, b, mult, seed):
        cell = Cell(opt, b, float(mult), int(seed), cell_config(sweep, opt, b, mult, seed, num_train))
        rec = run_cell(cell, workdir, num_train)
        records.append(rec)
        acc = rec["test_accuracy"]
        log(f"[{time.time() - t0:7.1f}s] {rec['cell']:<44} peak LR {rec['peak_learning_rate']:<8.4g} "
            + (f"acc {acc:.4f}" if acc is not None else rec["status"])
            + ("  (done before: skipped)" if rec["skipped"] else f"  {rec['wall_seconds']:.1f}s"))
        write_outputs(sweep, records, out, sweep_seconds=time.time() - t0, num_train=num_train, log=None)
        return rec

    for opt, b in todo:
        spec = sweep.optimizers[opt]
        first_seed = sweep.seeds[0]
        trials = [run(opt, b, m, first_seed) for m in spec.lr_multipliers]
        best = max(trials, key=_score)
        for seed in list(sweep.seeds[1:]) + (list(sweep.extra_seeds) if b in extra_batches else []):
            run(opt, b, best["lr_multiplier"], seed)
    summary = write_outputs(sweep, records, out, sweep_seconds=time.time() - t0, num_train=num_train, log=log)
    return summary


def _score(rec: dict) -> float:
    acc = rec.get("test_accuracy")
    return -1.0 if rec.get("status") != "ok" or acc is None or not math.isfinite(acc) else acc


# ----------------------------------------------------------------------------------------------
# Outputs.

def _stats(chosen: list[dict]) -> dict:
    accs = [r["test_accuracy"] if r["status"] == "ok" else None for r in sorted(chosen, key=lambda r: r["seed"])]
    ok = [a for a in accs if a is not None]
    mean = sum(ok) / len(ok) if ok else None
    std = math.sqrt(sum((a - mean) ** 2 for a in ok) / (len(ok) - 1)) if len(ok) > 1 else None
    return {"seeds": sorted(r["seed"] for r in chosen), "accuracies": accs,
            "diverged": sum(r["status"] != "ok" for r in chosen), "mean_accuracy": mean, "std_accuracy": std,
            "min_accuracy": min(ok) if ok else None, "max_accuracy": max(ok) if ok else None}


def summarise(sweep, records: list[dict]) -> list[dict]:
    """Per (optimizer, batch): the selected LR multiplier (best first-seed trial) with every seed run
    at it, and the scaling rule's own LR (multiplier 1) when it was among the trials."""
    rows = []
    for opt, b in plan(sweep):
        cells = [r for r in records if r["optimizer"] == opt and r["batch_size"] == b]
        if not cells:
            continue
        first = [r for r in cells if r["seed"] == sweep.seeds[0]]
        best = max(first or cells, key=_score)
        row = {
            "optimizer": opt, "label": sweep.optimizers[opt].label, "batch_size": b,
            "steps_per_epoch": best["steps_per_epoch"], "total_steps": best["final_step"],
            "lr_multiplier": best["lr_multiplier"], "peak_learning_rate": best["peak_learning_rate"],
            "lr_trials": sorted({r["lr_multiplier"] for r in first}),
            "trial_accuracies": {f"{r['lr_multiplier']:g}": (r["test_accuracy"] if r["status"] == "ok" else None)
                                 for r in sorted(first, key=lambda r: r["lr_multiplier"])},
            **_stats([r for r in cells if r["lr_multiplier"] == best["lr_multiplier"]]),
        }
        rule = [r for r in cells if r["lr_multiplier"] == 1.0]
        row["rule"] = ({"peak_learning_rate": rule[0]["peak_learning_rate"], **_stats(rule)} if rule else None)
        rows.append(row)
    return rows


def _pct(x) -> str:
    return "div." if x is None else f"{100 * x:.2f}"


def _acc_text(stats: dict) -> str:
    ok = [a for a in stats["accuracies"] if a is not None]
    if not ok:
        return "diverged"
    if len(stats["accuracies"]) > 1:
        return f"**{100 * stats['mean_accuracy']:.2f}** ({', '.join(_pct(a) for a in stats['accuracies'])})"
    return f"**{100 * ok[0]:.2f}**"


def columns(sweep) -> list[tuple[str, str, str]]:
    """(optimizer, "rule" | "best", header) for the main table: a searched optimizer whose trials
    include its rule's LR gets both columns, any other one column."""
    out = []
    for o in sweep.optimizer_order:
        spec = sweep.optimizers[o]
        mults = [float(m) for m in spec.lr_multipliers]
        if len(mults) > 1:
            if 1.0 in mults:
                out.append((o, "rule", f"{spec.label}: rule's LR"))
            out.append((o, "best", f"{spec.label}: best of {len(mults)} LRs"))
        else:
            out.append((o, "best", spec.label + ("" if mults == [1.0] else f" (LR x{mults[0]:g})")))
    return out


def markdown(sweep, summary: list[dict], records: list[dict], meta: dict) -> str:
    cols = [c for c in columns(sweep) if any(r["optimizer"] == c[0] for r in summary)]
    batches = sorted({r["batch_size"] for r in summary})
    by = {(r["optimizer"], r["batch_size"]): r for r in summary}
    lines = [f"# Sweep `{sweep.name}`: top-1 test accuracy (%) vs global batch size", "", meta["description"], ""]
    lines += ["| batch | steps/epoch | steps | " + " | ".join(h for _, _, h in cols) + " |",
              "|" + "---|" * (3 + len(cols))]
    for b in batches:
        any_row = next(by[(o, b)] for o, _, _ in cols if (o, b) in by)
        cells = []
        for o, kind, _ in cols:
            r = by.get((o, b))
            stats = None if r is None else (r if kind == "best" else r["rule"])
            if stats is None:
                cells.append("")
                continue
            lr = stats["peak_learning_rate"]
            cells.append(f"{_acc_text(stats)}<br>LR {lr:.3g}")
        lines.append(f"| {b:,} | {any_row['steps_per_epoch']} | {any_row['total_steps'] or ''} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Bold: mean over seeds, each seed's accuracy in brackets where more than one ran (the extra "
              "seeds run at the selected LR only). LR: the peak learning rate. \"rule's LR\": the optimizer's "
              "scaling rule alone (multiplier 1); \"best of N\": the trial with the best first-seed test accuracy "
              "(selection on the test set: there is no validation split, which flatters the searched columns).", ""]
    searched = [o for o in sweep.optimizer_order
                if len(sweep.optimizers[o].lr_multipliers) > 1 and any(r["optimizer"] == o for r in summary)]
    if searched:
        lines += ["## LR search (first seed; selection by test accuracy, no validation split)", ""]
        for o in searched:
            mults = list(sweep.optimizers[o].lr_multipliers)
            lines.append(f"**{sweep.optimizers[o].label}**, multipliers {', '.join(f'{m:g}' for m in mults)} of "
                         f"the rule's LR (`*`: selected):")
            lines.append("")
            lines += ["| batch | " + " | ".join(f"x{m:g}" for m in mults) + " |", "|" + "---|" * (1 + len(mults))]
            for b in batches:
                r = by.get((o, b))
                if r is None:
                    continue
                trial = r["trial_accuracies"]
                lines.append(f"| {b:,} | " + " | ".join(
                    (_pct(trial[f"{m:g}"]) + (" *" if float(m) == r["lr_multiplier"] else ""))
                    if f"{m:g}" in trial else "" for m in mults) + " |")
            lines.append("")
    lines += ["## Every cell", "", "| optimizer | batch | peak LR | seed | test acc. % | train loss | steps | s |",
              "|---|---|---|---|---|---|---|---|"]
    order = list(sweep.optimizer_order)
    for r in sorted(records, key=lambda r: (r["batch_size"], order.index(r["optimizer"]) if r["optimizer"] in order
                                            else len(order), r["lr_multiplier"], r["seed"])):
        tl = r["train_loss"]
        lines.append(f"| {sweep.optimizers[r['optimizer']].label} | {r['batch_size']:,} | {r['peak_learning_rate']:.4g} "
                     f"| {r['seed']} | {_pct(r['test_accuracy']) if r['status'] == 'ok' else r['status']} "
                     f"| {'' if tl is None or not math.isfinite(tl) else f'{tl:.4f}'} | {r['final_step'] or ''} "
                     f"| {r['wall_seconds']:.0f} |")
    lines += ["", f"Cells: {len(records)}; seconds summed over the cells (compile, train, eval): "
              f"{meta['cell_seconds']:.0f}; this invocation's wall time: {meta['sweep_seconds']:.0f} s on "
              f"{meta['machine']}.", ""]
    return "\n".join(lines)


def _describe(sweep) -> str:
    b = sweep.base
    epochs = f"{b.num_epochs:g} epochs" if b.total_steps is None else f"{b.total_steps} steps"
    parts = [f"Model `{b.model}` on `{b.dataset}` ({epochs} per run, the same for every cell; warmup "
             f"{b.warmup_epochs:g} epochs, {b.decay} decay"
             + (f" power {b.poly_power:g}" if b.decay == "poly" else "") + f", weight decay {b.weight_decay:g}, "
             f"BatchNorm group {b.bn_group_size or 'whole batch'}, augmentation {'on' if b.augment else 'off'})."]
    for o in sweep.optimizer_order:
        spec = sweep.optimizers[o]
        ov = ml_collections.ConfigDict({**sweep.base.to_dict(), **spec.overrides.to_dict()})
        mults = list(spec.lr_multipliers)
        search = (f"; LR search x{{{', '.join(f'{m:g}' for m in mults)}}} at every batch" if len(mults) > 1
                  else "; no LR search")
        rule = {"linear": f"x B/{ov.base_batch_size} (linear scaling)",
                "sqrt": f"x sqrt(B/{ov.base_batch_size}) (square-root scaling)",
                "none": "at every batch (no scaling)"}[ov.lr_scaling]
        parts.append(f"{spec.label}: `{ov.optimizer}`, peak LR {ov.base_learning_rate:g} {rule}{search}.")
    return " ".join(parts)


def write_outputs(sweep, records: list[dict], out: str, *, sweep_seconds: float, num_train: int,
                  log=print) -> dict:
    import platform
    summary = summarise(sweep, records)
    meta = {"description": _describe(sweep), "sweep_seconds": sweep_seconds,
            "cell_seconds": sum(r["wall_seconds"] for r in records),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "num_train": num_train}
    doc = {"schema_version": SCHEMA_VERSION, "sweep": sweep.name, **meta,
           "batch_sizes": sorted(sweep.batch_sizes), "optimizers": {
               o: {"label": sweep.optimizers[o].label, "overrides": sweep.optimizers[o].overrides.to_dict(),
                   "lr_multipliers": list(sweep.optimizers[o].lr_multipliers)} for o in sweep.optimizer_order},
           "seeds": list(sweep.seeds), "extra_seeds": list(sweep.extra_seeds),
           "selection": "best first-seed final test accuracy among the LR trials (no validation split)",
           "base_config": json.loads(sweep.base.to_json_best_effort()),
           "summary": summary, "cells": records}
    _atomic_write(os.path.join(out, RESULTS_JSON), json.dumps(doc, indent=2))
    _atomic_write(os.path.join(out, RESULTS_MD), markdown(sweep, summary, records, meta))
    try:
        plot_accuracy(sweep, summary, records, os.path.join(out, ACCURACY_PNG))
        plot_trust_ratios(sweep, summary, records, os.path.join(out, TRUST_PNG))
    except ImportError as e:  # matplotlib is an optional extra
        if log:
            log(f"plots skipped: {e}")
    if log:
        log(f"wrote {os.path.join(out, RESULTS_MD)}, {RESULTS_JSON}, {ACCURACY_PNG}, {TRUST_PNG}")
    return doc


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot_accuracy(sweep, summary, records, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = "osD^v<>"
    for i, opt in enumerate(sweep.optimizer_order):
        rows = [r for r in summary if r["optimizer"] == opt]
        if not rows:
            continue
        spec = sweep.optimizers[opt]
        searched = len(spec.lr_multipliers) > 1
        pts = [(r["batch_size"], 100 * r["mean_accuracy"]) for r in rows if r["mean_accuracy"] is not None]
        label = spec.label + (f" (best of {len(spec.lr_multipliers)} LRs)" if searched else "")
        xs, ys = zip(*pts) if pts else ((), ())
        line, = ax.plot(xs, ys, marker=markers[i % len(markers)], label=label)
        color = line.get_color()
        for r in rows:
            accs = [100 * a for a in r["accuracies"] if a is not None]
            ax.scatter([r["batch_size"]] * len(accs), accs, s=12, color=color, alpha=0.5)
            if r["diverged"] and not accs:
                ax.scatter([r["batch_size"]], [10.0], marker="x", color=color)  # chance level
        rule = [(r["batch_size"], 100 * r["rule"]["mean_accuracy"]) for r in rows
                if searched and r["rule"] and r["rule"]["mean_accuracy"] is not None]
        if rule:
            ax.plot(*zip(*rule), ls="--", marker=markers[i % len(markers)], mfc="none", color=color, alpha=0.7,
                    label=f"{spec.label} (rule's LR)")
    ax.set_xscale("log", base=2)
    batches = sorted({r["batch_size"] for r in summary})
    ax.set_xticks(batches, [f"{b:,}" for b in batches])
    ax.set_xlabel("global batch size (log scale)")
    ax.set_ylabel("top-1 test accuracy (%)")
    b = sweep.base
    budget = f"{b.num_epochs:g} epochs" if b.total_steps is None else f"{b.total_steps} steps"
    ax.set_title(f"{b.dataset}, {b.model}, {budget} per run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_scalars(workdir: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of the TensorBoard scalars under `prefix` in a run's workdir."""
    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(workdir, size_guidance={event_accumulator.TENSORS: 0,
                                                                     event_accumulator.SCALARS: 0})
    acc.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    tags = acc.Tags()
    for tag in tags.get("tensors", []):
        if not tag.startswith(prefix):
            continue
        values = [(e.step, np.asarray(_tensor_value(e.tensor_proto))) for e in acc.Tensors(tag)]
        if all(v.ndim == 0 and np.issubdtype(v.dtype, np.number) for _, v in values):  # not hparams/text
            out[tag] = [(step, float(v)) for step, v in values]
    for tag in tags.get("scalars", []):
        if tag.startswith(prefix):
            out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    return {k: sorted(v) for k, v in out.items()}


def _tensor_value(proto):
    from tensorboard.util import tensor_util
    return tensor_util.make_ndarray(proto)


def trust_ratio_runs(sweep, summary, records) -> list[dict]:
    """The first-seed records of the selected `trust_ratio_optimizer` cells at the smallest and
    largest batch size."""
    opt = sweep.trust_ratio_optimizer
    rows = [r for r in summary if r["optimizer"] == opt]
    if not rows:
        return []
    picks = {min(r["batch_size"] for r in rows), max(r["batch_size"] for r in rows)}
    out = []
    for r in sorted(rows, key=lambda r: r["batch_size"]):
        if r["batch_size"] not in picks:
            continue
        rec = next((c for c in records if c["optimizer"] == opt and c["batch_size"] == r["batch_size"]
                    and c["lr_multiplier"] == r["lr_multiplier"] and c["seed"] == sweep.seeds[0]), None)
        if rec is not None:
            out.append(rec)
    return out


def plot_trust_ratios(sweep, summary, records, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = trust_ratio_runs(sweep, summary, records)
    if not runs:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.2), squeeze=False)
    for ax, rec in zip(axes[0], runs):
        series = read_scalars(rec["workdir"], "layers/trust_ratio/")
        spe = rec["steps_per_epoch"] or 1
        for tag, pts in series.items():
            values = [v for _, v in pts]
            if all(v == 1.0 for v in values):  # excluded tensors (biases, BatchNorm): ratio 1 by rule
                continue
            ax.plot([s / spe for s, _ in pts], values, marker="." if len(pts) < 40 else None,
                    label=tag[len("layers/trust_ratio/"):])
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("trust ratio  eta*||w|| / (||g|| + beta*||w||)")
        ax.set_title(f"{sweep.optimizers[rec['optimizer']].label}, batch {rec['batch_size']:,} "
                     f"(peak LR {rec['peak_learning_rate']:.3g})")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Command line.

def main(argv=None) -> int:
    from absl import app, flags, logging
    from ml_collections import config_flags

    flags.DEFINE_string("workdir", None, "Sweep directory: one subdirectory per cell under cells/.")
    flags.DEFINE_string("out", None, "Where results.md/.json and the PNGs go (default: --workdir).")
    flags.DEFINE_bool("quick", False, "Apply the sweep config's `quick` overrides (a smoke run).")
    config_flags.DEFINE_config_file("config", None, "Sweep config file (experiments/sweeps/*.py).",
                                    lock_config=False)
    flags.mark_flags_as_required(["config", "workdir"])

    def _main(args):
        if len(args) > 1:
            raise app.UsageError(f"Unexpected arguments: {args[1:]}")
        FLAGS = flags.FLAGS
        logging.set_verbosity(logging.WARNING)  # the cells' per-step logs; the sweep prints one line per cell
        pylogging.getLogger().setLevel(pylogging.WARNING)
        sweep = apply_quick(FLAGS.config) if FLAGS.quick else FLAGS.config
        import jax
        print(f"sweep {sweep.name}: {len(jax.devices())} {jax.devices()[0].platform} device(s); "
              f"workdir {FLAGS.workdir}", flush=True)
        run_sweep(sweep, FLAGS.workdir, FLAGS.out, log=lambda s: print(s, flush=True))

    app.run(_main, argv=argv or sys.argv)
    return 0


if __name__ == "__main__":
    main()
