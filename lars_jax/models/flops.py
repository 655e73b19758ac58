"""Forward-pass cost per example: XLA's compiled cost analysis, and the conventional MAC count.

Neither runs the model: variables come from jax.eval_shape.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.extend.core  # noqa: F401  (ClosedJaxpr, Jaxpr for walking nested jaxprs)
import jax.numpy as jnp


def _flops_of(compiled) -> float:
    # jax returns a dict in recent versions and a one-element list of dicts in older ones.
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca["flops"])


def forward_flops(model, input_shape: Sequence[int], dtype=jnp.float32) -> float:
    """FLOPs per example of `model.apply(variables, x, train=False)` for x of `input_shape`.

    input_shape is [B, H, W, C]; returns the "flops" entry of XLA's cost analysis / B (a dict in
    jax 0.10; a one-element list in older versions). XLA counts a multiply-add as 2 FLOPs (so
    GMACs = FLOPs / 2), skips kernel taps that fall on zero padding (conventional counts, e.g.
    ResNet-50's 4.1 GMACs, include them: XLA's figure is a few percent lower), and adds
    elementwise work (BN, ReLU, pooling). Variables come from jax.eval_shape: nothing is
    initialised or run; the function is only compiled, for the default backend.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return _flops_of(fwd.lower(_abstract_variables(model, x), x).compile()) / input_shape[0]


def analytic_macs(model, input_shape: Sequence[int]) -> float:
    """Conventional multiply-adds per example: every conv and dense (dot) multiply-add of the
    forward pass, kernel taps on zero padding included; no elementwise work. This is the count
    published figures quote (torchvision's 4.09 "GFLOPS" for ResNet-50 are MACs). Read off the
    jaxpr, so it is backend independent.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        _abstract_variables(model, x), x)
    macs = 0
    for e in _eqns(jaxpr.jaxpr):
        out = math.prod(e.outvars[0].aval.shape)
        if e.primitive.name == "conv_general_dilated":  # flax kernels are HWIO, I = Cin / groups
            macs += out * math.prod(e.invars[1].aval.shape[:3])
        elif e.primitive.name == "dot_general":
            (contract, _), _ = e.params["dimension_numbers"]
            macs += out * math.prod(e.invars[0].aval.shape[d] for d in contract)
    return macs / input_shape[0]


def _abstract_variables(model, x):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype),
                                             train=False))


def _eqns(jaxpr):
    """Every equation of a jaxpr, including those in nested sub-jaxprs (pjit, custom_jvp...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _eqns(sub)
