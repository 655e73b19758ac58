"""Learning-rate schedules (warmup + poly / cosine / step / constant) and batch-size scaling rules.

All schedules are optax schedules: `step -> learning rate`, where `step` counts optimizer updates
from 0 (the first update gets the LR of step 0, as the MLPerf reference's `optimizer.iterations`).
Warmup is linear from `init` (default 0) at step 0 to the peak at `warmup_steps` (as in Goyal et al.
and the MLPerf LARS code); decay then runs over the remaining `total_steps - warmup_steps` steps
(`warmup_poly(extra_decay_steps=1)`: one more, the MLPerf reference's length).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import optax

from lars_jax.arguments import check_choice, check_range

DECAYS = ("poly", "cosine", "step", "constant")
LR_SCALINGS = ("none", "linear", "sqrt")


def _check_warmup(peak, warmup_steps, init) -> None:
    check_range("peak", peak, lambda v: v >= 0, "be >= 0")
    check_range("warmup_steps", warmup_steps, lambda v: v >= 0, "be >= 0")
    check_range("init", init, lambda v: v >= 0, "be >= 0")


def scaled_learning_rate(base_learning_rate: float, batch_size: int, *, base_batch_size: int = 256,
                         rule: str = "linear") -> float:
    """Peak LR for `batch_size` from a base LR tuned at `base_batch_size`.

    linear: base * B / B0 (Goyal et al.); sqrt: base * sqrt(B / B0) (Krizhevsky 2014; Hoffer et al.);
    none: base (LARS' usual choice: the trust ratio adapts each layer's step).
    """
    check_choice("rule", rule, LR_SCALINGS)
    check_range("base_learning_rate", base_learning_rate, lambda v: v >= 0, "be >= 0")
    check_range("base_batch_size", base_batch_size, lambda v: v > 0, "be > 0")
    ratio = batch_size / base_batch_size
    return base_learning_rate * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


def warmup_poly(peak: float, warmup_steps: int, total_steps: int, *, power: float = 2.0,
                end: float = 0.0, init: float = 0.0, extra_decay_steps: int = 0) -> optax.Schedule:
    """Linear warmup to `peak`, then gamma_t = end + (peak - end) * (1 - min(t', T')/T')^power, the
    polynomial decay (power 2 in the paper), with t' = t - warmup_steps and
    T' = total_steps - warmup_steps + extra_decay_steps.

    extra_decay_steps: 0 (default) reaches `end` at t = total_steps, one step after the last update;
    1 is the MLPerf reference's decay_steps = train_steps - warmup_steps + 1 (mlcommons/training
    resnet-tf2 lars_util.py; Google's MLPerf v0.7 TF and JAX code), whose last update keeps
    (2/T')^power of peak - end.
    """
    _check_warmup(peak, warmup_steps, init)
    check_range("power", power, lambda v: v > 0, "be > 0")
    check_range("end", end, lambda v: v >= 0, "be >= 0")
    check_range("extra_decay_steps", extra_decay_steps, lambda v: v >= 0, "be >= 0")
    decay = optax.polynomial_schedule(peak, end, power, max(total_steps - warmup_steps + extra_decay_steps, 1))
    return _after_warmup(peak, warmup_steps, decay, init)


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int, *, end: float = 0.0,
                  init: float = 0.0) -> optax.Schedule:
    """Linear warmup, then half-cosine from `peak` to `end` over the remaining steps."""
    _check_warmup(peak, warmup_steps, init)
    check_range("end", end, lambda v: v >= 0, "be >= 0")
    schedule = optax.warmup_cosine_decay_schedule(init, peak, warmup_steps, max(total_steps, warmup_steps + 1), end)
    return _float_steps(schedule)


def warmup_step(peak: float, warmup_steps: int, boundaries: tuple[int, ...], *,
                factor: float = 0.1, init: float = 0.0) -> optax.Schedule:
    """Linear warmup, then `peak` multiplied by `factor` at each absolute step in `boundaries`
    (Goyal et al.: x0.1 at epochs 30, 60 and 80)."""
    _check_warmup(peak, warmup_steps, init)
    check_range("factor", factor, lambda v: 0 < v <= 1, "lie in (0, 1]")
    decay = optax.piecewise_constant_schedule(
        peak, {b - warmup_steps: factor for b in boundaries if b > warmup_steps})
    return _after_warmup(peak, warmup_steps, decay, init)


def warmup_constant(peak: float, warmup_steps: int, *, init: float = 0.0) -> optax.Schedule:
    """Linear warmup, then `peak` for good."""
    _check_warmup(peak, warmup_steps, init)
    return _after_warmup(peak, warmup_steps, optax.constant_schedule(peak), init)


def _after_warmup(peak: float, warmup_steps: int, decay: optax.Schedule, init: float = 0.0) -> optax.Schedule:
    if warmup_steps == 0:
        return _float_steps(decay)
    return _float_steps(optax.join_schedules([optax.linear_schedule(init, peak, warmup_steps), decay], [warmup_steps]))


def _float_steps(schedule: optax.Schedule) -> optax.Schedule:
    """`schedule` read at the step count cast to the default float dtype. optax counts in int32, and
    JAX divides an int32 in float32 even under jax_enable_x64: a float64 run's LR would carry float32
    rounding (5.9e-7 relative at step 1 of a 25-step warmup to 31.2)."""
    return lambda step: schedule(jnp.asarray(step, jnp.result_type(float)))
