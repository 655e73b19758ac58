"""BatchNorm with optional per-group statistics, shared by every model in this package.

The paper (You et al. 2017) normalises per worker: each KNL computes BatchNorm statistics over
its own 64 images. `GroupedBatchNorm(group_size=g)` reproduces that on any device layout: in
train mode a batch [B, ...] with B % g == 0 is viewed as [B/g, g, ...] and each contiguous group
of g examples is normalised with its own mean and variance (over the group and the spatial
axes). With the batch sharded over a `data` mesh axis and g = per-device batch, every group lives
on one device, so the normalisation needs no cross-device communication.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn
from jax import lax


class GroupedBatchNorm(nn.Module):
    """BatchNorm over the last (feature) axis of x [B, ..., C]; drop-in for `nn.BatchNorm`.

    Variables and conventions are flax's (so checkpoints and tests can swap the two):
    params `scale`, `bias` [C]; batch_stats `mean`, `var` [C]; running average
    `ra = momentum * ra + (1 - momentum) * stat` (flax convention: momentum 0.9 here is
    PyTorch's momentum 0.1); statistics in float32 with flax's fast variance
    E[x^2] - E[x]^2 clipped at 0; output in `dtype`.

    group_size: None -> statistics over the whole batch the module sees (== nn.BatchNorm).
      g -> each group of g contiguous examples uses its own statistics (train mode only;
      eval always uses the running averages). B must be a multiple of g. The running averages
      are updated with the mean over groups of the group means and of the group (biased)
      variances; the latter is the average within-group variance, not the whole-batch variance,
      matching what each worker of the paper would have accumulated.
    """

    use_running_average: bool | None = None
    group_size: int | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    scale_init: nn.initializers.Initializer = nn.initializers.ones
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average)
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype)

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
            y = _affine(x, mean, var, scale, bias, self.epsilon)
            return y.astype(self.dtype or x.dtype)

        b = x.shape[0]
        g = b if self.group_size is None else self.group_size
        if self.is_initializing() and b % g:
            g = b  # init's dummy batch may be any size; nothing is learned from it
        if g <= 0 or b % g:
            raise ValueError(f"bn_group_size={g} must divide the batch {b} seen by BatchNorm")
        # [B, ..., C] -> [B/g, g, ..., C]; stats over every axis but the group and feature axes.
        xg = x.reshape((b // g, g) + x.shape[1:])
        axes = tuple(range(1, xg.ndim - 1))
        x32 = xg.astype(jnp.promote_types(x.dtype, jnp.float32))
        mean = x32.mean(axes, keepdims=True)
        mean2 = lax.square(x32).mean(axes, keepdims=True)
        var = jnp.maximum(0.0, mean2 - lax.square(mean))
        y = _affine(xg, mean, var, scale, bias, self.epsilon).reshape(x.shape)

        if not self.is_initializing():
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1 - m) * mean.reshape(-1, c).mean(0)
            ra_var.value = m * ra_var.value + (1 - m) * var.reshape(-1, c).mean(0)
        return y.astype(self.dtype or x.dtype)


def _affine(x, mean, var, scale, bias, epsilon):
    # Same operation order as flax's _normalize, so g == B matches nn.BatchNorm to the last bit.
    mul = lax.rsqrt(var + epsilon) * scale
    return (x - mean) * mul + bias


def conv_kernel_init():
    """He (fan_out, normal) init, torchvision's choice for ResNet convs."""
    return nn.initializers.variance_scaling(2.0, "fan_out", "normal")
