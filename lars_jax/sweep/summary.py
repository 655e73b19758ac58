"""The per-(optimizer, batch) summary of a sweep's cells: the selected LR and its seeds' accuracies."""
from __future__ import annotations

import math

from lars_jax.sweep.cells import plan, selection_score


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
        best = max(first or cells, key=selection_score)
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
