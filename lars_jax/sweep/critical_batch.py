"""The critical batch size from a sweep (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training", Sec. 2.2 and 5): the steps S and examples E = S * B a run needs to reach a
fixed train-loss target trade off as

    (S / S_min - 1) (E / E_min - 1) = 1,   i.e.   S(B) = S_min + E_min / B,

so S is linear in 1 / B: a least-squares line through (1/B, S) gives S_min (intercept) and E_min
(slope), and B_crit = E_min / S_min is the batch beyond which a larger batch stops cutting the
steps (at B_crit a run needs twice the minimal steps and twice the minimal examples).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lars_jax.sweep.summary import selected_cell


def steps_to_target(curve: Sequence[tuple[int, float]], target: float) -> float | None:
    """The step at which the train loss first reaches `target` (None if the run never got there).
    curve: [(step, mean train loss over the log window ending at that step)] in step order, as the
    loop logs it every log_every steps. Each mean is placed at its window's centre and the crossing
    is interpolated linearly between centres, so the answer is not quantised to log_every."""
    end, prev = 0, None  # the previous window's end step; (centre, loss) of the previous finite point
    for step, loss in curve:
        centre, end = (end + step) / 2, step
        if not math.isfinite(loss):
            continue
        if loss <= target:
            if prev is None or prev[1] == loss:
                return centre
            return prev[0] + (centre - prev[0]) * (prev[1] - target) / (prev[1] - loss)
        prev = (centre, loss)
    return None


def _lowest_if_learned(curve: Sequence[tuple[int, float]]) -> float | None:
    """A run's lowest logged train loss if it got below half its first one (None: it diverged or
    never learned, e.g. stayed at chance: such a run would set a target every other run meets at
    step 0)."""
    finite = [v for _, v in curve if math.isfinite(v)]
    return min(finite) if finite and min(finite) <= finite[0] / 2 else None


def loss_target(min_losses: Sequence[float], points: int = 3) -> float:
    """The lowest train loss that at least `points` of the runs reach (all runs if fewer): the
    `points`-th smallest of their lowest losses. A fixed-epoch sweep's largest batch may stop far
    above the others; a target it alone sets would be crossed by the small batches during warmup."""
    ranked = sorted(min_losses)
    return ranked[min(points, len(ranked)) - 1]


def fit(batches: Sequence[float], steps: Sequence[float]) -> dict:
    """S_min, E_min and B_crit = E_min / S_min fitted to S(B) = S_min + E_min / B by least squares
    over the (B, S) pairs (at least two distinct batch sizes); also the fit's relative RMS error.
    A fit with S_min <= 0 or E_min <= 0 does not describe the data: B_crit is then None."""
    b, s = np.asarray(batches, np.float64), np.asarray(steps, np.float64)
    if len(set(b.tolist())) < 2:
        raise ValueError(f"batches: need at least two distinct batch sizes, got {sorted(set(b.tolist()))}")
    design = np.stack([np.ones_like(b), 1 / b], axis=1)
    (s_min, e_min), *_ = np.linalg.lstsq(design, s, rcond=None)
    rms = float(np.sqrt(np.mean((design @ [s_min, e_min] - s) ** 2)) / np.mean(s))
    ok = s_min > 0 and e_min > 0
    return {"s_min": float(s_min), "e_min": float(e_min), "b_crit": float(e_min / s_min) if ok else None,
            "relative_rms_error": rms, "points": [[float(x), float(y)] for x, y in zip(b, s)]}


def thirds(curve: Sequence[tuple[int, float]]) -> list[float | None]:
    """Mean of the finite values in the first, middle and last third of a curve's points."""
    values = [v for _, v in curve]
    n = len(values)
    out = []
    for part in (values[:n // 3], values[n // 3:2 * n // 3], values[2 * n // 3:]):
        ok = [v for v in part if math.isfinite(v)]
        out.append(sum(ok) / len(ok) if ok else None)
    return out


def knee(rows: list[dict], points: float = 0.01) -> int | None:
    """The smallest batch whose mean validation accuracy is more than `points` below the smallest
    batch's, a diverged batch (accuracy None) counting as below (None if no batch is)."""
    rows = sorted(rows, key=lambda r: r["batch_size"])
    if not rows or rows[0]["mean_validation_accuracy"] is None:
        return None
    base = rows[0]["mean_validation_accuracy"]
    return next((r["batch_size"] for r in rows[1:]
                 if r["mean_validation_accuracy"] is None or r["mean_validation_accuracy"] < base - points), None)


def largest_within(rows: list[dict], points: float = 0.01) -> int | None:
    """The largest batch below the knee: the largest one that, like every smaller one, stays within
    `points` of the smallest batch's mean validation accuracy (None without a smallest batch)."""
    rows = sorted(rows, key=lambda r: r["batch_size"])
    if not rows or rows[0]["mean_validation_accuracy"] is None:
        return None
    first_below = knee(rows, points)
    return max(r["batch_size"] for r in rows if first_below is None or r["batch_size"] < first_below)


def prediction(sweep, summary: list[dict], records: list[dict]) -> dict:
    """The sweep's test of the noise-scale prediction, per optimizer: B_simple over training of its
    smallest-batch run (first seed, selected LR), B_crit fitted to the steps each batch needed to
    reach a train-loss target (loss_target over the runs that learned: one that at least three
    batches reach; the others are listed as not reached), and the knee: the smallest batch losing
    more than 1 point of validation accuracy."""
    out = {}
    for opt in sweep.optimizer_order:
        rows = sorted((r for r in summary if r["optimizer"] == opt), key=lambda r: r["batch_size"])
        cells = [c for c in (selected_cell(sweep, records, r) for r in rows) if c and c["train_loss_curve"]]
        if not cells:
            continue
        learned = [v for v in (_lowest_if_learned(c["train_loss_curve"]) for c in cells) if v is not None]
        target = loss_target(learned) if learned else None  # None: no run learned
        steps = [(c, None if target is None else steps_to_target(c["train_loss_curve"], target)) for c in cells]
        reached = [(c["batch_size"], s) for c, s in steps if s is not None]
        smallest = cells[0]
        entry = {"label": sweep.optimizers[opt].label, "target_train_loss": target,
                 "steps_to_target": {str(b): s for b, s in reached},
                 "not_reached": {str(c["batch_size"]): c["final_step"] for c, s in steps if s is None},
                 "knee_batch": knee(rows), "largest_within_1_point": largest_within(rows),
                 "b_simple_batch": smallest["batch_size"],
                 "b_simple_thirds": thirds(smallest.get("b_simple_curve") or []),
                 "b_simple_last_20pct": (smallest.get("noise_scale") or {}).get("b_simple")}
        try:
            entry["fit"] = fit(*zip(*reached)) if len({b for b, _ in reached}) >= 2 else None
        except ValueError:
            entry["fit"] = None
        out[opt] = entry
    return out
