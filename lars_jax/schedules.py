"""Learning-rate schedules (warmup + poly / cosine / step / constant) and batch-size scaling rules.

All schedules are optax schedules: `step -> learning rate`, where `step` counts optimizer updates
from 0. Warmup is linear from `init` (default 0) at step 0 to the peak at `warmup_steps` (as in Goyal et al. and
Google's MLPerf LARS code); decay then runs over the remaining `total_steps - warmup_steps` steps.
"""
from __future__ import annotations

import math

import optax

from lars_jax.configs import ConfigError, DECAYS, LR_SCALINGS


def scaled_learning_rate(base_learning_rate: float, batch_size: int, *, base_batch_size: int = 256,
                         rule: str = "linear") -> float:
    """Peak LR for `batch_size` from a base LR tuned at `base_batch_size`.

    linear: base * B / B0 (Goyal et al.); sqrt: base * sqrt(B / B0) (Krizhevsky 2014; Hoffer et al.);
    none: base (LARS' usual choice: the trust ratio adapts each layer's step).
    """
    if rule not in LR_SCALINGS:
        raise ConfigError(f"config.lr_scaling: got {rule!r}; allowed values: {', '.join(map(repr, LR_SCALINGS))}")
    ratio = batch_size / base_batch_size
    return base_learning_rate * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


def warmup_poly(peak: float, warmup_steps: int, total_steps: int, *, power: float = 2.0,
                end: float = 0.0, init: float = 0.0) -> optax.Schedule:
    """Linear warmup to `peak`, then gamma_t = end + (peak - end) * (1 - t'/T')^power, the paper's
    polynomial decay (power 2), with t' = t - warmup_steps and T' = total_steps - warmup_steps."""
    decay = optax.polynomial_schedule(peak, end, power, max(total_steps - warmup_steps, 1))
    return _after_warmup(peak, warmup_steps, decay, init)


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int, *, end: float = 0.0,
                  init: float = 0.0) -> optax.Schedule:
    """Linear warmup, then half-cosine from `peak` to `end` over the remaining steps."""
    return optax.warmup_cosine_decay_schedule(init, peak, warmup_steps, max(total_steps, warmup_steps + 1), end)


def warmup_step(peak: float, warmup_steps: int, boundaries: tuple[int, ...], *,
                factor: float = 0.1, init: float = 0.0) -> optax.Schedule:
    """Linear warmup, then `peak` multiplied by `factor` at each absolute step in `boundaries`
    (Goyal et al.: x0.1 at epochs 30, 60 and 80)."""
    decay = optax.piecewise_constant_schedule(
        peak, {b - warmup_steps: factor for b in boundaries if b > warmup_steps})
    return _after_warmup(peak, warmup_steps, decay, init)


def _after_warmup(peak: float, warmup_steps: int, decay: optax.Schedule, init: float = 0.0) -> optax.Schedule:
    if warmup_steps == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(init, peak, warmup_steps), decay], [warmup_steps])


def make_schedule(config, steps_per_epoch: int) -> tuple[optax.Schedule, int]:
    """(schedule, total_steps) from the config's optimizer fields; total_steps overrides num_epochs."""
    total = total_steps(config, steps_per_epoch)
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if warmup > total:
        raise ConfigError(
            f"config.warmup_epochs: {config.warmup_epochs} epochs = {warmup} steps is longer than training "
            f"({total} steps); use warmup_epochs <= {total / steps_per_epoch:g}, or keep the schedule and "
            f"stop early with config.stop_after_steps=N instead of shortening config.total_steps")
    peak = scaled_learning_rate(config.base_learning_rate, config.global_batch_size,
                                base_batch_size=config.base_batch_size, rule=config.lr_scaling)
    init = config.warmup_init_learning_rate
    if config.decay == "poly":
        schedule = warmup_poly(peak, warmup, total, power=config.poly_power, end=config.end_learning_rate, init=init)
    elif config.decay == "cosine":
        schedule = warmup_cosine(peak, warmup, total, end=config.end_learning_rate, init=init)
    elif config.decay == "step":
        boundaries = tuple(round(e * steps_per_epoch) for e in config.step_decay_epochs)
        schedule = warmup_step(peak, warmup, boundaries, factor=config.step_decay_factor, init=init)
    elif config.decay == "constant":
        schedule = _after_warmup(peak, warmup, optax.constant_schedule(peak), init)
    else:
        raise ConfigError(f"config.decay: got {config.decay!r}; allowed values: {', '.join(map(repr, DECAYS))}")
    return schedule, total


def total_steps(config, steps_per_epoch: int) -> int:
    """config.total_steps when set, else round(num_epochs * steps_per_epoch) (at least 1)."""
    if config.total_steps is not None:
        return int(config.total_steps)
    return max(1, round(config.num_epochs * steps_per_epoch))
