"""The per-(optimizer, batch) summary of a sweep's cells: the LR selected on validation accuracy
(first seed) and the test accuracy of every seed run at it."""
from __future__ import annotations

import math

from lars_jax.sweep.cells import plan, selection_score


def _mean_std(values: list) -> tuple[float | None, float | None]:
    ok = [v for v in values if v is not None]
    mean = sum(ok) / len(ok) if ok else None
    std = math.sqrt(sum((v - mean) ** 2 for v in ok) / (len(ok) - 1)) if len(ok) > 1 else None
    return mean, std


def _stats(chosen: list[dict]) -> dict:
    chosen = sorted(chosen, key=lambda r: r["seed"])
    accs = [r["test_accuracy"] if r["status"] == "ok" else None for r in chosen]
    vals = [r.get("validation_accuracy") if r["status"] == "ok" else None for r in chosen]
    ok = [a for a in accs if a is not None]
    mean, std = _mean_std(accs)
    return {"seeds": [r["seed"] for r in chosen], "accuracies": accs, "validation_accuracies": vals,
            "diverged": sum(r["status"] != "ok" for r in chosen), "mean_accuracy": mean, "std_accuracy": std,
            "mean_validation_accuracy": _mean_std(vals)[0],
            "min_accuracy": min(ok) if ok else None, "max_accuracy": max(ok) if ok else None}


def selected_cell(sweep, records: list[dict], row: dict) -> dict | None:
    """The first-seed record of a summary row's selected cell (its optimizer, batch and LR
    multiplier); None if that cell has no record."""
    return next((r for r in records if r["optimizer"] == row["optimizer"] and r["batch_size"] == row["batch_size"]
                 and r["lr_multiplier"] == row["lr_multiplier"] and r["seed"] == sweep.seeds[0]), None)


def summarise(sweep, records: list[dict]) -> list[dict]:
    """Per (optimizer, batch): the selected LR multiplier (best first-seed validation accuracy)
    with every seed run at it, and the scaling rule's own LR (multiplier 1) when it was a trial."""
    rows = []
    for opt, b in plan(sweep):
        cells = [r for r in records if r["optimizer"] == opt and r["batch_size"] == b]
        if not cells:
            continue
        first = [r for r in cells if r["seed"] == sweep.seeds[0]]
        best = max(first or cells, key=selection_score)
        row = {
            "optimizer": opt, "label": sweep.optimizers[opt].label, "batch_size": b,
            "steps_per_epoch": best["steps_per_epoch"], "total_steps": best["final_step"],
            "lr_multiplier": best["lr_multiplier"], "peak_learning_rate": best["peak_learning_rate"],
            "lr_trials": sorted({r["lr_multiplier"] for r in first}),
            "trial_validation_accuracies": {
                f"{r['lr_multiplier']:g}": (r.get("validation_accuracy") if r["status"] == "ok" else None)
                for r in sorted(first, key=lambda r: r["lr_multiplier"])},
            **_stats([r for r in cells if r["lr_multiplier"] == best["lr_multiplier"]]),
        }
        rule = [r for r in cells if r["lr_multiplier"] == 1.0]
        row["rule"] = ({"peak_learning_rate": rule[0]["peak_learning_rate"], **_stats(rule)} if rule else None)
        rows.append(row)
    return rows
