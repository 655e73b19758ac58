"""Model registry: `create_model(name, num_classes=..., dtype=..., bn_group_size=...)`.

Every model maps x float [B, H, W, C] (NHWC) to float32 logits [B, num_classes] via
`model.apply(variables, x, train=...)`; variables hold "params" (always float32) and, for models
with BatchNorm, "batch_stats". `dtype` is the computation dtype (e.g. bfloat16 activations).
AlexNet's dropout draws from the "dropout" rng stream when train=True.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from lars_jax.models.alexnet import AlexNet, AlexNetBN, lrn
from lars_jax.models.flops import analytic_macs, forward_flops
from lars_jax.models.layers import GroupedBatchNorm
from lars_jax.models.resnet import CifarResNet, ResNet, cifar_resnet, imagenet_resnet
from lars_jax.models.small import MLP, SmallCNN


def _no_bn(cls):
    # bn_group_size is meaningless without BatchNorm; accept and ignore it so every model shares
    # one signature.
    def make(*, bn_group_size=None, **kwargs):
        return cls(**kwargs)
    return make


MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "mlp": MLP,
    "resnet18": functools.partial(imagenet_resnet, 18),
    "resnet34": functools.partial(imagenet_resnet, 34),
    "resnet50": functools.partial(imagenet_resnet, 50),
    "resnet101": functools.partial(imagenet_resnet, 101),
    "resnet20": functools.partial(cifar_resnet, 20),
    "resnet56": functools.partial(cifar_resnet, 56),
    "alexnet": _no_bn(AlexNet),
    "alexnet_bn": AlexNetBN,
}


def create_model(name: str, *, num_classes: int, dtype=jnp.float32,
                 bn_group_size: int | None = None, **kwargs) -> nn.Module:
    """Builds model `name` (see MODELS); extra kwargs go to the model (e.g. variant="v1")."""
    if name not in MODELS:
        raise ValueError(f"config.model: unknown model {name!r}; "
                         f"known: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, dtype=jnp.dtype(dtype),
                        bn_group_size=bn_group_size, **kwargs)


def param_count(params) -> int:
    """Number of scalars in a params pytree (works on jax.eval_shape outputs)."""
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


__all__ = ["MODELS", "create_model", "analytic_macs", "forward_flops", "param_count", "AlexNet",
           "AlexNetBN", "CifarResNet", "GroupedBatchNorm", "MLP", "ResNet", "SmallCNN", "lrn"]
