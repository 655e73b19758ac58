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


def steps_to_target(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The first logged step whose train loss is <= target (None if the run never got there).
    curve: [(step, train loss)] in step order, as the loop logs it every log_every steps."""
    for step, loss in curve:
        if math.isfinite(loss) and loss <= target:
            return int(step)
    return None


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
