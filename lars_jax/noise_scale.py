"""The simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, "An
Empirical Model of Large-Batch Training", Appendix A.1), from gradients a data-parallel step
already has.

G is the true (full-data) gradient and Sigma the per-example gradient covariance, so a batch of B
independent examples has E|G_B|^2 = |G|^2 + tr(Sigma) / B. Two gradients of different batch
sizes, a "small" one of B_small examples (one device's or one microbatch's) and a "big" one of
B_big (their average, the global gradient), give unbiased estimates of both terms
(`estimate`); each is too noisy to read on one step, so the two are averaged over steps
separately, and B_simple is the ratio of the averages (`ema_update`, `b_simple`). B_simple is in
examples; it is the paper's B_noise when the Hessian is a multiple of the identity, and B_noise
predicts the critical batch size B_crit, above which a larger batch stops cutting the steps.

Units: |G|^2 in (loss / param)^2, summed over all parameters; tr(Sigma) in the same units times
examples; B_simple in examples. Dependence between the small gradients (they are slices of one
batch) does not bias anything: each expectation is taken on its own.

Sampling: exactly unbiased when the examples of a batch are drawn with replacement (or from an
infinite stream). Drawing a batch without replacement from N examples, as a data loader does,
gives E[estimate] = (|G|^2 - tr(Sigma) / (N - 1), tr(Sigma) * N / (N - 1)) with Sigma the 1/N
population covariance: a bias of order B_simple / N in |G|^2, negligible for N >> B_simple.

BatchNorm: the examples normalised together (one BN group: a device's batch, or a
`bn_group_size` group) share statistics, so their gradients are not independent, and the
estimator's unit of "one example" is one group. Count b_small and b_big in groups, with every
group inside one small batch (the group size divides the per-device or microbatch size); the
result is then the noise scale of group gradients, Sigma being the covariance of one group's
gradient. Counting in examples instead (b * group size) leaves |G|^2 unchanged and multiplies
tr(Sigma) and B_simple by the group size: B_simple(examples) = group_size * B_simple(groups),
the batch in examples at which noise matches signal for this group size. Another group size
changes the gradients themselves, so the value need not carry over; measure it again there.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


def _float_dtype(*xs) -> jnp.dtype:
    """The inputs' float dtype, never lower than float32 (float64 stays float64 under x64)."""
    return jnp.promote_types(jnp.result_type(*xs), jnp.float32)


def sq_norm(tree: Any) -> jax.Array:
    """|g|^2, the sum of squares over every leaf of a gradient pytree: a scalar in float32, or
    float64 if any leaf is float64. bf16/f16 leaves are squared and summed in float32."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    dtype = _float_dtype(*leaves)
    return sum(jnp.sum(jnp.square(jnp.asarray(x).astype(dtype))) for x in leaves)


def _check_batches(b_small, b_big) -> None:
    try:
        small, big = float(b_small), float(b_big)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: the caller's to guarantee
    if not 0 < small < big:
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small}, b_big={b_big}")


def estimate(small_sq_norm, big_sq_norm, b_small, b_big) -> tuple[jax.Array, jax.Array]:
    """One step's unbiased estimates (|G|^2, tr(Sigma)) (McCandlish et al. appendix A.1).

    small_sq_norm: |G_small|^2, the squared norm of a gradient averaged over b_small examples, or
      the mean of several such (e.g. the pmean over devices of each device's own, which only cuts
      the variance).
    big_sq_norm: |G_big|^2, the squared norm of the gradient averaged over b_big examples.
    b_small < b_big: the batch sizes, in examples (or BN groups, see the module docstring).

    Returns scalars in the inputs' float dtype (at least float32):
      |G|^2       = (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
      tr(Sigma)   = (|G_small|^2 - |G_big|^2) / (1 / b_small - 1 / b_big)
    Either may come out negative on a single step; only their averages are meaningful.
    """
    _check_batches(b_small, b_big)
    dtype = _float_dtype(small_sq_norm, big_sq_norm)
    small = jnp.asarray(small_sq_norm, dtype)
    big = jnp.asarray(big_sq_norm, dtype)
    b_s, b_b = jnp.asarray(b_small, dtype), jnp.asarray(b_big, dtype)
    grad_sq = (b_b * big - b_s * small) / (b_b - b_s)
    trace_sigma = (small - big) / (1 / b_s - 1 / b_b)
    return grad_sq, trace_sigma


class EmaState(NamedTuple):
    """Exponential moving averages of the two estimates, kept apart (a pytree of scalars).

    count: int32, updates so far. weight: sum of the EMA weights, 1 - decay^count for a constant
    decay (Adam's bias correction, kept as a sum so a changing decay is corrected too).
    grad_sq, trace_sigma: the uncorrected EMAs of |G|^2 and tr(Sigma); divide by weight to read.
    """
    count: jax.Array
    weight: jax.Array
    grad_sq: jax.Array
    trace_sigma: jax.Array


def ema_init(dtype=jnp.float32) -> EmaState:
    zero = jnp.zeros((), dtype)
    return EmaState(jnp.zeros((), jnp.int32), zero, zero, zero)


def ema_update(state: EmaState, grad_sq, trace_sigma, decay) -> EmaState:
    """state after one more step's estimates; decay in [0, 1) (e.g. 0.99: ~100 steps' memory).
    A nan or inf estimate stays in the averages: gate the call if a step can produce one."""
    dtype = state.weight.dtype
    d = jnp.asarray(decay, dtype)
    mix = lambda avg, x: d * avg + (1 - d) * jnp.asarray(x, dtype)  # noqa: E731
    return EmaState(state.count + 1, mix(state.weight, 1), mix(state.grad_sq, grad_sq),
                    mix(state.trace_sigma, trace_sigma))


def ema_values(state: EmaState) -> tuple[jax.Array, jax.Array]:
    """The bias-corrected averages (|G|^2, tr(Sigma)); nan before the first update."""
    w = jnp.where(state.weight > 0, state.weight, jnp.nan)
    return state.grad_sq / w, state.trace_sigma / w


def b_simple(state: EmaState) -> jax.Array:
    """B_simple = EMA(tr Sigma) / EMA(|G|^2), in examples (or BN groups).

    nan, never inf or a meaningless sign, while the |G|^2 average is <= 0 (before the first
    update, early on, or when the batches are noise-dominated, B_simple >> b_big, and |G|^2 is
    lost in the estimator's noise) or the tr(Sigma) average is < 0: read it as "not yet
    measurable at this batch size", not as a value.
    """
    grad_sq, trace_sigma = ema_values(state)
    ok = measurable(grad_sq, trace_sigma)
    return jnp.where(ok, trace_sigma / jnp.where(ok, grad_sq, 1), jnp.nan)


def measurable(grad_sq, trace_sigma):
    """Whether trace_sigma / grad_sq is a B_simple (|G|^2 > 0 and tr(Sigma) >= 0, see `b_simple`):
    elementwise on jax arrays, a bool on host floats, so the device and host forms share the rule."""
    return (grad_sq > 0) & (trace_sigma >= 0)


def b_simple_of(grad_sq: float, trace_sigma: float) -> float | None:
    """`b_simple` of host averages (Python floats: float64, no device round trip); None where it
    gives nan."""
    return trace_sigma / grad_sq if measurable(grad_sq, trace_sigma) else None


def step_update(state: EmaState, small_sq_norm, big_sq_norm, b_small, b_big, decay) -> tuple[EmaState, dict]:
    """One train step's part: `estimate` from its two squared norms, then `ema_update` with `decay`.

    Returns (the new state, metrics of scalars): this step's estimates grad_sq and trace_sigma, and
    the state's bias-corrected averages avg_grad_sq, avg_trace_sigma and b_simple. b_small < b_big:
    as in `estimate`, in examples or BN groups.
    """
    grad_sq, trace_sigma = estimate(small_sq_norm, big_sq_norm, b_small, b_big)
    state = ema_update(state, grad_sq, trace_sigma, decay)
    avg_grad_sq, avg_trace_sigma = ema_values(state)
    return state, {"grad_sq": grad_sq, "trace_sigma": trace_sigma, "avg_grad_sq": avg_grad_sq,
                   "avg_trace_sigma": avg_trace_sigma, "b_simple": b_simple(state)}
