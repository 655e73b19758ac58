"""LARS, LAMB and momentum-SGD baselines as optax transformations, plus per-layer diagnostics.

LARS (You, Gitman, Ginsburg 2017, Algorithm 1), per parameter tensor w with gradient g:

    lambda = eta * ||w|| / (||g|| + beta * ||w|| + eps)      denominator="paper"
    lambda = eta * ||w|| / (||g + beta * w|| + eps)           denominator="optax" (= optax.lars)
    v <- m * v + gamma_t * lambda * (g + beta * w);   w <- w - v

with eta the trust coefficient, beta the weight decay, gamma_t the global schedule, m the
momentum. Where a norm is 0, lambda = 1, each mode as its reference does: "paper" tests ||w|| and
||g|| (tf.contrib's LARSOptimizer, the MLPerf TF2 reference; a tensor with g = 0 then still decays
by gamma_t * beta * w), "optax" tests ||w|| and ||g + beta * w||, exactly as `optax.lars` (g = 0
keeps lambda = eta / beta). Google's MLPerf v0.7 JAX code (flax.optim.LARS before September 2020)
tests ||w|| + ||g||, a third rule not offered here (docs/optimizer.md).
Norms accumulate in float32 for bf16/f16 leaves and in the leaf's own dtype for float32/float64.
Excluded tensors (default: every leaf with
ndim <= 1, i.e. biases and BatchNorm scale/bias) get v <- m * v + gamma_t * g: no trust ratio, no
weight decay.

Everything is `optax.chain(<trust-ratio step>, scale_by_learning_rate, trace)`: only the
trust-ratio step, which optax lacks in the paper's form, is written here.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from lars_jax.arguments import check_choice, check_range

OPTIMIZERS = ("lars", "lamb", "sgd")  # the factories below, by name
# The trust ratio of each LARS `denominator` (and LAMB's), as plots print it; "{eps}" stands for
# " + eps" where eps > 0.
TRUST_RATIO_FORMULAS = {"paper": "eta*||w|| / (||g|| + beta*||w||{eps})", "optax": "eta*||w|| / (||g + beta*w||{eps})"}
LAMB_TRUST_RATIO_FORMULA = "||w|| / ||r + beta*w||"
DENOMINATORS = tuple(TRUST_RATIO_FORMULAS)
WEIGHT_DECAY_MODES = ("l2", "decoupled")
Exclude = Union[None, Any, Callable[[Any], Any]]  # None, a pytree of bools, or params -> such a pytree


def exclude_ndim_le_1(params) -> Any:
    """The default exclusion: True for every leaf with ndim <= 1 (biases, BatchNorm scale/bias)."""
    return jax.tree.map(lambda p: jnp.ndim(p) <= 1, params)


def _excluded(exclude: Exclude, params) -> Any:
    """The pytree of Python bools (True = excluded) that `exclude` gives for `params`."""
    if exclude is None:
        exclude = exclude_ndim_le_1
    tree = exclude(params) if callable(exclude) else exclude
    return jax.tree.map(bool, tree)


def _included(exclude: Exclude) -> Callable[[Any], Any]:
    """An optax mask (True = transformed) that is the negation of `exclude`."""
    return lambda params: jax.tree.map(lambda e: not e, _excluded(exclude, params))


def _check_common(learning_rate, momentum: float, weight_decay: float) -> None:
    check_range("learning_rate", learning_rate, lambda v: v >= 0, "be >= 0 (a float or an optax schedule)")
    check_range("momentum", momentum, lambda v: 0 <= v < 1, "lie in [0, 1)")
    check_range("weight_decay", weight_decay, lambda v: v >= 0, "be >= 0")


def trust_ratio(w_norm, u_norm, wd_u_norm, *, weight_decay: float, trust_coefficient: float,
                eps: float, denominator: str):
    """The layer-wise local LR lambda (a scalar) for the update u of a tensor w:

        "paper": eta * ||w|| / (||u|| + beta * ||w|| + eps),  1 where ||w|| = 0 or ||u|| = 0
        "optax": eta * ||w|| / (||u + beta*w|| + eps),        1 where ||w|| = 0 or ||u + beta*w|| = 0

    w_norm: ||w||; u_norm: ||u|| of the raw update (the gradient for LARS), read by "paper" only;
    wd_u_norm: ||u + beta*w||, read by "optax" only (as optax.scale_by_trust_ratio, which sees u + beta*w).
    """
    if denominator == "paper":
        denom, norm = u_norm + weight_decay * w_norm + eps, u_norm
    else:
        denom, norm = wd_u_norm + eps, wd_u_norm
    ratio = trust_coefficient * w_norm / denom
    return jnp.where((w_norm == 0) | (norm == 0), jnp.ones_like(ratio), ratio)


def _norm(x):
    # bf16/f16 sums of squares lose the norm: accumulate those in float32, never lower float64.
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.sqrt(jnp.sum(x * x))


def _layerwise(scale_leaf: Callable[[Any, Any], Any], exclude: Exclude) -> optax.GradientTransformation:
    """A stateless transformation: u -> scale_leaf(u, w) for included leaves, u for excluded ones.

    `update` needs `params`.
    """

    def one(u, w):
        if w is None:
            raise ValueError("the layer-wise trust ratio needs params: call tx.update(grads, state, params)")
        return scale_leaf(u, w).astype(u.dtype)

    masked = optax.masked(optax.stateless_with_tree_map(one), _included(exclude))
    # optax.stateless keeps the state EmptyState, not masked's MaskedState(EmptyState()): orbax
    # restores a checkpoint only into the tree structure it was written with, EmptyState until now.
    return optax.stateless(lambda updates, params: masked.update(updates, optax.MaskedState(optax.EmptyState()),
                                                                 params)[0])


def scale_by_layerwise_trust_ratio(*, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
                                   eps: float = 0.0, denominator: str = "paper",
                                   exclude: Exclude = None) -> optax.GradientTransformation:
    """u -> lambda * (u + beta * w) for included leaves, u unchanged for excluded ones.

    A stateless optax transformation; `update` needs `params`.
    """
    check_choice("denominator", denominator, DENOMINATORS)

    def scale_leaf(u, w):
        decayed_norm = _norm(u + weight_decay * w) if denominator == "optax" else None
        ratio = trust_ratio(_norm(w), _norm(u), decayed_norm, weight_decay=weight_decay,
                            trust_coefficient=trust_coefficient, eps=eps, denominator=denominator)
        # ratio * u + (ratio * beta) * w, not ratio * (u + beta * w): with the optax denominator,
        # XLA:CPU would share u + beta * w between the norm and the update and write it out in
        # full (42 -> 22 ms on ResNet-50's tree, benchmarks/optimizer.py).
        return ratio * u + (ratio * weight_decay) * w

    return _layerwise(scale_leaf, exclude)


def lars(learning_rate, *, momentum: float = 0.9, weight_decay: float = 0.0,
         trust_coefficient: float = 0.001, eps: float = 0.0, nesterov: bool = False,
         exclude: Exclude = None, denominator: str = "paper") -> optax.GradientTransformation:
    """LARS with the learning rate inside the momentum (module docstring has the formula).

    learning_rate: a float >= 0 or an optax schedule of the update count.
    exclude: None (leaves with ndim <= 1), a pytree of bools matching params (True = excluded), or
      a callable params -> such a pytree.
    nesterov: update = -(m * v_new + gamma_t * lambda * (g + beta * w)) on the same v.
    """
    _check_common(learning_rate, momentum, weight_decay)
    check_range("trust_coefficient", trust_coefficient, lambda v: v > 0, "be > 0")
    check_range("eps", eps, lambda v: v >= 0, "be >= 0")
    return optax.chain(
        scale_by_layerwise_trust_ratio(weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                                       eps=eps, denominator=denominator, exclude=exclude),
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=momentum, nesterov=nesterov),
    )


def lamb(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         weight_decay: float = 0.0, exclude: Exclude = None) -> optax.GradientTransformation:
    """LAMB (You et al. 2020): the Adam direction r, then for included leaves
    lambda = ||w|| / ||r + beta * w|| and update -gamma_t * lambda * (r + beta * w); excluded leaves
    get -gamma_t * r (no trust ratio, no weight decay). With nothing excluded it equals optax.lamb
    (whose mask covers only the weight decay, never the trust ratio)."""
    _check_common(learning_rate, 0.0, weight_decay)
    check_range("b1", b1, lambda v: 0 <= v < 1, "lie in [0, 1)")
    check_range("b2", b2, lambda v: 0 <= v < 1, "lie in [0, 1)")
    check_range("eps", eps, lambda v: v >= 0, "be >= 0")

    def scale_leaf(r, w):
        # Here r + beta * w is written out once and shared, unlike in LARS: r is Adam's output, in
        # memory already, and recomputing from r and w costs more (46 vs 53 ms on ResNet-50's tree).
        decayed = r + weight_decay * w
        ratio = trust_ratio(_norm(w), _norm(r), _norm(decayed), weight_decay=weight_decay,
                            trust_coefficient=1.0, eps=0.0, denominator="optax")
        return ratio * decayed

    return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), _layerwise(scale_leaf, exclude),
                       optax.scale_by_learning_rate(learning_rate))


def sgd(learning_rate, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0,
        weight_decay_mode: str = "l2", exclude: Exclude = None) -> optax.GradientTransformation:
    """Momentum SGD (heavy ball or Nesterov) with the same exclusion rule as `lars`.

    l2: v <- m * v + gamma_t * (g + beta * w); w <- w - v (the LR inside the momentum, as in lars).
    decoupled (SGDW, Loshchilov & Hutter): v <- m * v + g; w <- w - gamma_t * (v + beta * w).
    """
    _check_common(learning_rate, momentum, weight_decay)
    check_choice("weight_decay_mode", weight_decay_mode, WEIGHT_DECAY_MODES)
    decay = optax.masked(optax.add_decayed_weights(weight_decay), _included(exclude))
    if weight_decay_mode == "l2":
        return optax.chain(decay, optax.scale_by_learning_rate(learning_rate),
                           optax.trace(decay=momentum, nesterov=nesterov))
    return optax.chain(optax.trace(decay=momentum, nesterov=nesterov), decay,
                       optax.scale_by_learning_rate(learning_rate))


class LayerStats(NamedTuple):
    """Per-tensor diagnostics, each a pytree of float32 scalars shaped like params."""
    w_norm: Any
    g_norm: Any
    trust_ratio: Any  # lambda as LARS would compute it (1.0 for excluded leaves)


def layer_stats(params, grads, *, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
                eps: float = 0.0, denominator: str = "paper", exclude: Exclude = None) -> LayerStats:
    """||w||, ||g|| and the LARS trust ratio of every parameter tensor.

    Called inside a jitted step next to `lars`, XLA computes the norms once for both.
    """
    excluded = _excluded(exclude, params)
    w_norm = jax.tree.map(_norm, params)
    g_norm = jax.tree.map(_norm, grads)

    def ratio(w, g, wn, gn, skip):
        if skip:
            return jnp.ones((), jnp.float32)
        wd_norm = _norm(g + weight_decay * w) if denominator == "optax" else None
        return trust_ratio(wn, gn, wd_norm, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                           eps=eps, denominator=denominator)

    ratios = jax.tree.map(ratio, params, grads, w_norm, g_norm, excluded)
    return LayerStats(w_norm, g_norm, ratios)


def layer_stats_fn(**kwargs) -> Callable[[Any, Any], dict[str, jax.Array]]:
    """(params, grads) -> flatten_layer_stats(layer_stats(params, grads, **kwargs)): the per-layer
    diagnostics a train step logs (steps.make_train_step's `layer_stats`), float32 scalars."""
    return lambda params, grads: flatten_layer_stats(layer_stats(params, grads, **kwargs))


def flatten_layer_stats(stats: LayerStats) -> dict[str, float]:
    """{'trust_ratio/conv1/kernel': ..., 'w_norm/...': ..., 'g_norm/...': ...} for metric writers."""
    out = {}
    for field, tree in stats._asdict().items():
        for path, value in jax.tree_util.tree_leaves_with_path(tree):
            name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
            out[f"{field}/{name}"] = value
    return out
