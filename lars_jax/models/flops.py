"""Forward-pass FLOPs per example from XLA's compiled cost analysis (no execution)."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def _flops_of(compiled) -> float:
    # jax returns a dict in recent versions and a one-element list of dicts in older ones.
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0]
    return float(ca["flops"])


def forward_flops(model, input_shape: Sequence[int], dtype=jnp.float32) -> float:
    """FLOPs per example of `model.apply(variables, x, train=False)` for x of `input_shape`.

    input_shape is [B, H, W, C]; the result is total FLOPs / B. XLA counts a multiply-add as 2
    FLOPs (so GMACs = FLOPs / 2) and also counts elementwise ops (BN, ReLU, pooling), a few
    percent on top of the convs and matmuls. Variables come from jax.eval_shape, so nothing is
    initialised or run; only compiled for the default backend.
    """
    x = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype),
                                                  train=False))
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return _flops_of(fwd.lower(variables, x).compile()) / input_shape[0]
