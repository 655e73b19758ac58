"""Model registry: `create_model(name, num_classes=..., dtype=..., bn_group_size=...)`.

Every model maps x float [B, H, W, C] (NHWC) to float32 logits [B, num_classes] via
`model.apply(variables, x, train=...)`; variables hold "params" (always float32) and, for models
with BatchNorm, "batch_stats". `dtype` is the computation dtype (e.g. bfloat16 activations).
AlexNet's dropout draws from the "dropout" rng stream when train=True.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from lars_jax.models.alexnet import AlexNet, AlexNetBN, lrn
from lars_jax.models.flops import analytic_macs, forward_flops
from lars_jax.models.layers import GroupedBatchNorm
from lars_jax.models.resnet import IMAGENET_STAGES, CifarResNet, ResNet
from lars_jax.models.small import MLP, SmallCNN


def _no_bn(cls):
    # bn_group_size is meaningless without BatchNorm; accept and ignore it so every model shares
    # one signature.
    def make(*, bn_group_size=None, **kwargs):
        return cls(**kwargs)
    make.model_class = cls
    return make


MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "mlp": MLP,
    **{f"resnet{d}": functools.partial(ResNet, stage_sizes=stages, block_cls=block)
       for d, (stages, block) in IMAGENET_STAGES.items()},
    "resnet20": functools.partial(CifarResNet, depth=20),
    "resnet56": functools.partial(CifarResNet, depth=56),
    "alexnet": _no_bn(AlexNet),
    "alexnet_bn": AlexNetBN,
}


def options(name: str) -> tuple[str, ...]:
    """The keyword options model `name` accepts besides num_classes: its module's fields, and
    bn_group_size (accepted and ignored by models without BatchNorm)."""
    factory = MODELS[name]
    cls = getattr(factory, "model_class", None) or getattr(factory, "func", factory)
    fixed = {"num_classes", "parent", "name", *getattr(factory, "keywords", {})}
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    return tuple(fields) + (() if "bn_group_size" in fields else ("bn_group_size",))


def create_model(name: str, *, num_classes: int, dtype=jnp.float32,
                 bn_group_size: int | None = None, **kwargs) -> nn.Module:
    """Builds model `name` (see MODELS); extra kwargs go to the model (e.g. variant="v1").

    ValueError naming the option for one the model does not take (`options(name)` lists them)."""
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    unknown = sorted(set(kwargs) - set(options(name)))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of model {name!r}; its options: {', '.join(options(name))}")
    return MODELS[name](num_classes=num_classes, dtype=jnp.dtype(dtype),
                        bn_group_size=bn_group_size, **kwargs)


def param_count(params) -> int:
    """Number of scalars in a params pytree (works on jax.eval_shape outputs)."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


__all__ = ["MODELS", "create_model", "options", "analytic_macs", "forward_flops", "param_count", "AlexNet",
           "AlexNetBN", "CifarResNet", "GroupedBatchNorm", "MLP", "ResNet", "SmallCNN", "lrn"]
