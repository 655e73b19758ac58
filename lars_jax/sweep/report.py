"""The sweep's outputs: results.json, results.md, and the plots (plots.py), rewritten after every cell."""
from __future__ import annotations

import json
import math
import os

from lars_jax.sweep.cells import optimizer_config
from lars_jax.sweep.critical_batch import prediction
from lars_jax.workdir import finite_or_none, write_text
from lars_jax.sweep.plots import ACCURACY_PNG, NOISE_PNG, TRUST_PNG, plot_accuracy, plot_noise_scale, plot_trust_ratios
from lars_jax.sweep.summary import summarise

RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
SCHEMA_VERSION = 2  # 2: LRs selected on a validation split; the noise-scale prediction


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
            # "chosen", not "best": picked on validation, while the table shows test accuracy
            out.append((o, "best", f"{spec.label}: chosen of {len(mults)} LRs"))
        else:
            out.append((o, "best", spec.label + ("" if mults == [1.0] else f" (LR x{mults[0]:g})")))
    return out


def markdown(sweep, summary: list[dict], records: list[dict], meta: dict) -> str:
    cols = [c for c in columns(sweep) if any(r["optimizer"] == c[0] for r in summary)]
    batches = sorted({r["batch_size"] for r in summary})
    by = {(r["optimizer"], r["batch_size"]): r for r in summary}
    lines = [f"# Sweep `{sweep.name}`: top-1 test accuracy (%) vs global batch size, LRs chosen on validation", "",
             meta["description"], ""]
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
    lines += ["", "Test accuracy on the test split, which chose nothing. Bold: mean over seeds, each seed's "
              "accuracy in brackets where more than one ran (the extra seeds run at the selected LR only). LR: the "
              "peak learning rate. \"rule's LR\": the optimizer's scaling rule alone (multiplier 1); \"chosen of "
              "N\": the trial with the best first-seed accuracy on the validation split.", ""]
    searched = [o for o in sweep.optimizer_order
                if len(sweep.optimizers[o].lr_multipliers) > 1 and any(r["optimizer"] == o for r in summary)]
    if searched:
        lines += ["## LR search (first seed; validation accuracy %, which chooses)", ""]
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
                trial = r["trial_validation_accuracies"]
                lines.append(f"| {b:,} | " + " | ".join(
                    (_pct(trial[f"{m:g}"]) + (" *" if float(m) == r["lr_multiplier"] else ""))
                    if f"{m:g}" in trial else "" for m in mults) + " |")
            lines.append("")
    lines += _prediction_lines(meta.get("prediction", {}))
    lines += ["## Every cell", "", "| optimizer | batch | peak LR | seed | val. acc. % | test acc. % | train loss "
              "| B_simple (last 20%) | steps | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    order = list(sweep.optimizer_order)
    for r in sorted(records, key=lambda r: (r["batch_size"], order.index(r["optimizer"]) if r["optimizer"] in order
                                            else len(order), r["lr_multiplier"], r["seed"])):
        tl, ok = r["train_loss"], r["status"] == "ok"
        gns = (r.get("noise_scale") or {}).get("b_simple")
        lines.append(f"| {sweep.optimizers[r['optimizer']].label} | {r['batch_size']:,} | {r['peak_learning_rate']:.4g} "
                     f"| {r['seed']} | {_pct(r.get('validation_accuracy')) if ok else r['status']} "
                     f"| {_pct(r['test_accuracy']) if ok else ''} "
                     f"| {'' if tl is None or not math.isfinite(tl) else f'{tl:.4f}'} | {_num(gns)} "
                     f"| {r['final_step'] or ''} | {r['wall_seconds']:.0f} |")
    skipped = sum(1 for r in records if r.get("skipped"))
    lines += ["", f"Cells: {len(records)}; seconds summed over the cells (compile, train, eval): "
              f"{meta['cell_seconds']:.0f}; this invocation's wall time: {meta['sweep_seconds']:.0f} s on "
              f"{meta['machine']}" + (f", {skipped} of the cells done by an earlier invocation" if skipped else "")
              + ".", ""]
    return "\n".join(lines)


def _num(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:,.0f}"


def _largest_text(batch, b_simple_mid) -> str:
    if batch is None:
        return ""
    return f"{batch:,}" + (f" ({batch / b_simple_mid:.1f}x)" if b_simple_mid else "")


def _prediction_lines(pred: dict) -> list[str]:
    """The noise-scale prediction against the sweep: B_simple, B_crit fitted, the observed knee."""
    if not pred:
        return []
    lines = ["## How large can the batch be? B_simple, B_crit and the knee", "",
             "| optimizer | B_simple at batch b (early / mid / late third; last 20%) | B_crit fitted "
             "(S_min, E_min; points, rel. RMS) | train-loss target | steps to it per batch | knee: first batch "
             "> 1 point below the smallest (validation) | largest batch within 1 point (B / mid B_simple) |",
             "|---|---|---|---|---|---|---|"]
    for entry in pred.values():
        early, mid, late = entry["b_simple_thirds"]
        fit = entry.get("fit") or {}
        if fit.get("b_crit"):
            n = len(fit["points"])
            quality = f"{n} points, {100 * fit['relative_rms_error']:.0f}%" if n > 2 else "2 points: exact, untested"
            fitted = f"**{_num(fit['b_crit'])}** ({fit['s_min']:.0f} steps, {fit['e_min']:,.0f} examples; {quality})"
        elif fit and fit["e_min"] > 0:  # S_min <= 0: the steps still fall as 1 / B at every reached batch
            fitted = f"**> {max(b for b, _ in fit['points']):,.0f}** (S_min = {fit['s_min']:.0f} <= 0: steps ~ 1/B)"
        else:
            fitted = "no fit (E_min <= 0)" if fit else "no fit (< 2 batches reach the target)"
        steps = ", ".join([f"{int(b):,}: {s:.0f}" for b, s in entry["steps_to_target"].items()]
                          + [f"{int(b):,}: " + ("diverged" if limit is None else f"not in {limit}")
                             for b, limit in entry.get("not_reached", {}).items()])
        target = entry["target_train_loss"]
        last = _num(entry["b_simple_last_20pct"]) or "unresolved (mean G^2 estimate <= 0)"
        lines.append(f"| {entry['label']} | b = {entry['b_simple_batch']:,}: {_num(early)} / {_num(mid)} / "
                     f"{_num(late)}; {last} | {fitted} | "
                     f"{'' if target is None else format(target, '.3f')} | {steps} | "
                     f"{'none' if entry['knee_batch'] is None else format(entry['knee_batch'], ',')} | "
                     f"{_largest_text(entry.get('largest_within_1_point'), mid)} |")
    return lines + ["", "B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), in examples (with BatchNorm: "
                        "per-group noise scale x group size). B_crit from S(B) = S_min + E_min / B fitted to the "
                        "steps each batch's run (first seed, chosen LR) needed to reach the target: the lowest "
                        "train loss (mean of a log window) that at least three batches reach, the crossing "
                        "interpolated between log points.", ""]


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
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "num_train": num_train,
            "prediction": prediction(sweep, summary, records)}
    doc = {"schema_version": SCHEMA_VERSION, "sweep": sweep.name, **meta,
           "batch_sizes": sorted(sweep.batch_sizes), "optimizers": {
               o: {"label": sweep.optimizers[o].label, "overrides": sweep.optimizers[o].overrides.to_dict(),
                   "lr_multipliers": list(sweep.optimizers[o].lr_multipliers)} for o in sweep.optimizer_order},
           "seeds": list(sweep.seeds), "extra_seeds": list(sweep.extra_seeds),
           "selection": "best first-seed final validation accuracy among the LR trials; the test split "
                        "chooses nothing",
           "base_config": json.loads(sweep.base.to_json_best_effort()),
           "summary": summary, "prediction": meta["prediction"], "cells": records}
    # strict JSON: a curve's not-yet-measurable points (nan) become null
    write_text(os.path.join(out, RESULTS_JSON), json.dumps(finite_or_none(doc), indent=2, allow_nan=False))
    write_text(os.path.join(out, RESULTS_MD), markdown(sweep, summary, records, meta))
    try:
        plot_accuracy(sweep, summary, records, os.path.join(out, ACCURACY_PNG))
        plot_trust_ratios(sweep, summary, records, os.path.join(out, TRUST_PNG))
        plot_noise_scale(sweep, summary, records, os.path.join(out, NOISE_PNG))
    except ImportError as e:  # matplotlib is an optional extra
        if log:
            log(f"plots skipped: {e}")
    if log:
        log(f"wrote {os.path.join(out, RESULTS_MD)}, {RESULTS_JSON}, {ACCURACY_PNG}, {TRUST_PNG}, {NOISE_PNG}")
    return doc

