"""A 2-D convolution and a max pool with lax's math, whose gradients XLA's CPU backend runs faster.

Both are drop-ins: `conv_general_dilated` for `lax.conv_general_dilated` (pass it to flax's
`nn.Conv(conv_general_dilated=...)`: parameters, names and shapes are unchanged) and `max_pool`
for `flax.linen.max_pool`. Forward values are lax's; gradients are lax's up to float rounding of
the weight gradient's sums (and bit for bit for the pool). README.md, section "Performance", has the profiles.

conv_general_dilated: the forward pass is `lax.conv_general_dilated`, unchanged on every backend,
so FLOP counts and GPU/TPU programs are untouched. The backward pass differs on CPU only (chosen
per platform at lowering by `lax.platform_dependent`; elsewhere it is lax's own transpose rule):
  - input gradient: lax's transposed convolution, as usual;
  - weight gradient dW[i, j, c, o] = sum_{b, h, w} xpad[b, s*h + i, s*w + j, c] * g[b, h, w, o]:
    * few input channels (kh * kw * Cin <= PATCHES_MAX_K, e.g. a first layer on 1- or 3-channel
      images): one matmul patches^T @ g with patches [B*Ho*Wo, kh*kw*Cin], the kh*kw shifted
      taps of x side by side (im2col). XLA's convolution for Cin = 1 runs at a few GFLOP/s and
      needs transposed copies of x and g first;
    * otherwise, with `transpose_by_matmul=True`: the same convolution lax's rule uses (batch
      axis contracted, NHWC -> CHWN), but its operands x and g are transposed from a matmul with
      the identity. XLA's CPU backend lays that convolution out by transposing x and g, and it
      fuses the whole elementwise chain that produced them (BatchNorm, ReLU, residual adds, the
      BatchNorm backward) into those transposing copies, which then run at a few hundred MB/s:
      40-50% of a CIFAR ResNet-20 train step. The identity matmul (exact: one product by 1 per
      output) materialises x and g first, so the transposes become plain copies. Worth it where
      x and g come from such chains (ResNets); not where x is already materialised (the small
      CNN's second conv reads the pool output: there the extra matmuls cost ~10%, so it passes
      False and keeps lax's weight gradient).

max_pool: for non-overlapping windows (window == stride, VALID, sizes divisible) the forward pass
is the elementwise maximum of the k*k strided taps, which also records the index (int8) of the
first maximal tap; the backward pass routes each gradient to that tap. This is exactly the
gradient of `lax.reduce_window` max (XLA's select_and_scatter gives it to the first maximum of the
window, ties included); on CPU XLA expands select_and_scatter into a reduce-window over (value,
index) tuples, a stack of iotas and a scatter: ~60% of the small CNN's train step. Other pools
(overlapping 3x3/2, padding) go to `flax.linen.max_pool`.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

PATCHES_MAX_K = 32  # weight gradient by im2col when kh * kw * Cin <= this
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _conv(x, w, strides, padding, precision):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                    precision=precision)


def _transpose_by_matmul(x, perm):
    """jnp.transpose(x, perm), read from a matmul of x with the identity (exact) so that XLA
    materialises x instead of fusing its producers into a strided transposing copy."""
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    y = lax.dot_general(x, eye, (((x.ndim - 1,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    return jnp.transpose(y, perm)


def _patches(x, kh, kw, strides, padding, out_hw):
    """[B, Ho, Wo, kh*kw*C]: the taps of every output position, in HWIO kernel order."""
    (sh, sw), (ho, wo) = strides, out_hw
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    b, c = x.shape[0], x.shape[3]
    taps = [lax.slice(xp, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                      (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    return jnp.stack(taps, axis=3).reshape(b, ho, wo, kh * kw * c)


def _weight_grad_patches(x, g, w_shape, strides, padding, precision):
    kh, kw, ci, co = w_shape
    b, ho, wo, _ = g.shape
    cols = _patches(x, kh, kw, strides, padding, (ho, wo)).reshape(b * ho * wo, kh * kw * ci)
    # 2-D operands contracted over their leading axis: XLA calls the matmul with a transposed
    # left operand and copies nothing (a 4-D contraction would get a transposing copy first).
    dw = lax.dot_general(cols, g.reshape(b * ho * wo, co), (((0,), (0,)), ((), ())),
                         precision=precision)
    return dw.reshape(kh, kw, ci, co)


def _weight_grad_transposed(x, g, w_shape, strides, padding, precision):
    kh, kw, ci, co = w_shape
    xt = _transpose_by_matmul(x, (3, 1, 2, 0))  # [Cin, H, W, B]: batch of Cin, B contracted
    gt = _transpose_by_matmul(g, (1, 2, 0, 3))  # [Ho, Wo, B, Cout]: the "kernel"
    dwt = lax.conv_general_dilated(xt, gt, (1, 1), padding, rhs_dilation=strides,
                                   dimension_numbers=_NHWC, precision=precision)
    return jnp.transpose(dwt[:, :kh, :kw, :], (1, 2, 0, 3))  # [Cin, kh', kw', Cout] -> HWIO


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_cpu_grad(x, w, strides, padding, precision, transpose_by_matmul):
    return _conv(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision, transpose_by_matmul):
    return _conv(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, transpose_by_matmul, res, g):
    x, w = res

    def lax_rule(x, w, g):
        _, vjp = jax.vjp(lambda x, w: _conv(x, w, strides, padding, precision), x, w)
        return vjp(g)

    def cpu_rule(x, w, g):
        _, vjp_x = jax.vjp(lambda x: _conv(x, w, strides, padding, precision), x)
        (dx,) = vjp_x(g)  # dropped by XLA when x needs no gradient (the input images)
        kh, kw, ci, _ = w.shape
        if kh * kw * ci <= PATCHES_MAX_K:
            dw = _weight_grad_patches(x, g, w.shape, strides, padding, precision)
        elif transpose_by_matmul:
            dw = _weight_grad_transposed(x, g, w.shape, strides, padding, precision)
        else:
            _, vjp_w = jax.vjp(lambda w: _conv(x, w, strides, padding, precision), w)
            (dw,) = vjp_w(g)
        return dx, dw.astype(w.dtype)

    return lax.platform_dependent(x, w, g, cpu=cpu_rule, default=lax_rule)


_conv_cpu_grad.defvjp(_conv_fwd, _conv_bwd)


def _is_one(dilation) -> bool:
    return dilation is None or all(d == 1 for d in dilation)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None, *,
                         transpose_by_matmul: bool = True):
    """lax.conv_general_dilated with the CPU weight gradients of the module docstring.

    Handles 2-D NHWC x HWIO convolutions without dilation or groups (every conv of this
    project's ResNets and small CNN); anything else goes to lax.conv_general_dilated unchanged.
    transpose_by_matmul: for kh*kw*Cin > PATCHES_MAX_K, compute the weight gradient from
    matmul-materialised transposes (True) or with lax's rule (False).
    """
    supported = (lhs.ndim == 4 and rhs.ndim == 4 and _is_one(lhs_dilation) and _is_one(rhs_dilation)
                 and feature_group_count == 1 and batch_group_count == 1
                 and preferred_element_type is None and lhs.dtype == rhs.dtype
                 and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == _NHWC)
    if not supported:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
            batch_group_count=batch_group_count, precision=precision,
            preferred_element_type=preferred_element_type)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _conv_cpu_grad(lhs, rhs, strides, padding, precision, bool(transpose_by_matmul))


# --------------------------------------------------------------------------------------- pool
def _pool_taps(x, k):
    b, h, w, c = x.shape
    return [lax.slice(x, (0, i, j, 0), (b, h - k + 1 + i, w - k + 1 + j, c), (1, k, k, 1))
            for i in range(k) for j in range(k)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_tiles(x, k):
    return functools.reduce(jnp.maximum, _pool_taps(x, k))


def _pool_fwd(x, k):
    taps = _pool_taps(x, k)
    y = functools.reduce(jnp.maximum, taps)
    first = jnp.full(y.shape, k * k - 1, jnp.int8)  # index of the first tap equal to the max
    for t in reversed(range(k * k - 1)):
        first = jnp.where(taps[t] == y, jnp.int8(t), first)
    return y, first


def _pool_bwd(k, first, g):
    b, ho, wo, c = g.shape
    tap = (lax.broadcasted_iota(jnp.int8, (1, 1, k, 1, k, 1), 2) * k
           + lax.broadcasted_iota(jnp.int8, (1, 1, k, 1, k, 1), 4))
    dx = jnp.where(tap == first[:, :, None, :, None, :], g[:, :, None, :, None, :],
                   jnp.zeros((), g.dtype))
    return (dx.reshape(b, ho * k, wo * k, c),)


_max_pool_tiles.defvjp(_pool_fwd, _pool_bwd)


def max_pool(inputs, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID"):
    """flax.linen.max_pool; non-overlapping k x k windows take the fast path (module docstring)."""
    window_shape = tuple(window_shape)
    strides = tuple(strides) if strides is not None else (1,) * len(window_shape)  # flax's default
    k = window_shape[0]
    if (inputs.ndim == 4 and window_shape == (k, k) and strides == (k, k) and 1 < k <= 11
            and padding == "VALID" and inputs.shape[1] % k == 0 and inputs.shape[2] % k == 0):
        return _max_pool_tiles(inputs, k)
    return nn.max_pool(inputs, window_shape, strides, padding)
