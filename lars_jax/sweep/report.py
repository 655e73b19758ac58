"""The sweep's outputs: results.json, results.md, and the plots (plots.py), rewritten after every cell."""
from __future__ import annotations

import json
import math
import os

from lars_jax.sweep.cells import optimizer_config
from lars_jax.workdir import write_text
from lars_jax.sweep.plots import ACCURACY_PNG, TRUST_PNG, plot_accuracy, plot_trust_ratios
from lars_jax.sweep.summary import summarise

RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
SCHEMA_VERSION = 1


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
    b, sc = sweep.base, sweep.base.schedule
    epochs = f"{sc.num_epochs:g} epochs" if sc.total_steps is None else f"{sc.total_steps} steps"
    parts = [f"Model `{b.model.name}` on `{b.data.name}` ({epochs} per run, the same for every cell; warmup "
             f"{sc.warmup_epochs:g} epochs, {sc.decay} decay"
             + (f" power {sc.poly_power:g}" if sc.decay == "poly" else "") + ", "
             f"BatchNorm group {b.model.bn_group_size or 'whole batch'}, augmentation {'on' if b.data.augment else 'off'})."]
    for o in sweep.optimizer_order:
        spec = sweep.optimizers[o]
        ov = optimizer_config(sweep, o)
        mults = list(spec.lr_multipliers)
        search = (f"; LR search x{{{', '.join(f'{m:g}' for m in mults)}}} at every batch" if len(mults) > 1
                  else "; no LR search")
        osc, part = ov.schedule, ov.optimizer[ov.optimizer.name]
        rule = {"linear": f"x B/{osc.base_batch_size} (linear scaling)",
                "sqrt": f"x sqrt(B/{osc.base_batch_size}) (square-root scaling)",
                "none": "at every batch (no scaling)"}[osc.lr_scaling]
        kind = "Nesterov" if part.get("nesterov") else ov.optimizer.name
        parts.append(f"{spec.label}: `{kind}`, weight decay {part.weight_decay:g}, peak LR "
                     f"{osc.base_learning_rate:g} {rule}{search}.")
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
    write_text(os.path.join(out, RESULTS_JSON), json.dumps(doc, indent=2))
    write_text(os.path.join(out, RESULTS_MD), markdown(sweep, summary, records, meta))
    try:
        plot_accuracy(sweep, summary, records, os.path.join(out, ACCURACY_PNG))
        plot_trust_ratios(sweep, summary, records, os.path.join(out, TRUST_PNG))
    except ImportError as e:  # matplotlib is an optional extra
        if log:
            log(f"plots skipped: {e}")
    if log:
        log(f"wrote {os.path.join(out, RESULTS_MD)}, {RESULTS_JSON}, {ACCURACY_PNG}, {TRUST_PNG}")
    return doc

