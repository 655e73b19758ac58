"""A 2-D convolution and a max pool with lax's math, whose gradients XLA runs faster (the conv on CPU).

Both are drop-ins: `conv_general_dilated` for `lax.conv_general_dilated` (pass it to flax's
`nn.Conv(conv_general_dilated=...)`: parameters, names and shapes are unchanged) and `max_pool`
for `flax.linen.max_pool`. Forward values are lax's; derivatives are lax's up to float rounding
of the weight terms' sums (and of overlapping pool windows' sums). docs/performance.md has the profiles.

Both are `jax.custom_jvp`s with a linear tangent rule that JAX transposes for reverse mode, so
jvp, linearize, forward-over-reverse HVPs and reverse mode all work; each tangent rule is written
so that its transpose is the fast CPU gradient.

conv_general_dilated: the forward pass is `lax.conv_general_dilated`, unchanged on every backend,
so FLOP counts and GPU/TPU programs are untouched. The tangent is conv(dx, w) + T(dw); conv(dx, w)
is lax's everywhere (its transpose: lax's input gradient). T(dw) = conv(x, dw) is written
differently on CPU only (chosen per platform at lowering by `lax.platform_dependent`; elsewhere
it is lax's, and so is its transpose). Its transpose is the weight gradient
dW[i, j, c, o] = sum_{b, h, w} xpad[b, s*h + i, s*w + j, c] * g[b, h, w, o]:
  * few input channels (kh * kw * Cin <= PATCHES_MAX_K, e.g. a first layer on 1- or 3-channel
    images): T(dw) = patches @ dw with patches [B*Ho*Wo, kh*kw*Cin], the kh*kw shifted taps of
    x side by side (im2col); transposed, one matmul patches^T @ g. XLA's convolution for Cin = 1
    runs at a few GFLOP/s and needs transposed copies of x and g first;
  * otherwise, with `transpose_by_matmul=True`: T(dw) = conv(x @ I, dw) @ I, matmuls with the
    identity (exact: one product by 1 per output). Transposed, it is lax's weight-gradient
    convolution (batch axis contracted, NHWC -> CHWN) of x @ I and g @ I. XLA's CPU backend lays
    that convolution out by transposing x and g, and it fuses the whole elementwise chain that
    produced them (BatchNorm, ReLU, residual adds, the BatchNorm backward) into those
    transposing copies, which then run at a few hundred MB/s: 40-50% of a CIFAR ResNet-20 train
    step. The identity matmuls materialise x and g first, so the transposes become plain copies.
    Worth it where x and g come from such chains (ResNets); not where x is already materialised
    (the small CNN's second conv reads the pool output: there the extra matmuls cost more than
    they save, so it passes False and gets lax's conv and derivatives unchanged).

max_pool: the first maximum of each window, as lax's reduce-window max, with a gradient made of
elementwise operations instead of select_and_scatter, which XLA's CPU backend expands into a
reduce-window over (value, index) tuples, a stack of iotas and a scatter (~60% of the small CNN's
train step) and its GPU backend runs as a scatter with atomics. The forward pass is the maximum of
the k*k strided taps of the (-inf padded) input, recording the index (int8) of the first maximal tap;
the tangent is that tap's tangent, so the transpose routes each gradient to it (strided pads that
XLA fuses; overlapping windows add theirs). This is lax's derivative in both modes
(select_and_scatter also gives the gradient to the first maximum of the window, ties included):
bit for bit for non-overlapping windows (the "tiles" path: the windows tile the input), equal up to
the order of the additions where windows overlap (the ResNet stem's 3x3/2, AlexNet's). Other
windows go to `flax.linen.max_pool`.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax
from jax.custom_derivatives import SymbolicZero

PATCHES_MAX_K = 32  # weight gradient by im2col when kh * kw * Cin <= this
_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _conv(x, w, strides, padding, precision):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                    precision=precision)


def _patches(x, kh, kw, strides, padding, out_hw):
    """[B, Ho, Wo, kh*kw*C]: the taps of every output position, in HWIO kernel order."""
    (sh, sw), (ho, wo) = strides, out_hw
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    b, c = x.shape[0], x.shape[3]
    taps = [lax.slice(xp, (0, i, j, 0), (b, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                      (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    return jnp.stack(taps, axis=3).reshape(b, ho, wo, kh * kw * c)


def _eye_matmul(x, eye_axis=0):
    """x @ I over the last axis, contracting I's `eye_axis`: exact (one product by 1 per output),
    and XLA materialises it instead of fusing x's producers into whatever reads x next."""
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    return lax.dot_general(x, eye, (((x.ndim - 1,), (eye_axis,)), ((), ())),
                           precision=lax.Precision.HIGHEST)


def _weight_tangent_patches(x, dw, strides, padding, out_hw, precision):
    """conv(x, dw) as patches(x) @ dw: its transpose in dw is the matmul patches^T @ g."""
    kh, kw, ci, co = dw.shape
    b, (ho, wo), k = x.shape[0], out_hw, kh * kw * ci
    cols = _patches(x, kh, kw, strides, padding, out_hw).reshape(b * ho * wo, k)
    dy = lax.dot_general(cols, dw.reshape(k, co), (((1,), (0,)), ((), ())), precision=precision)
    return dy.reshape(b, ho, wo, co)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv_cpu_grad(x, w, strides, padding, precision):
    return _conv(x, w, strides, padding, precision)


@functools.partial(_conv_cpu_grad.defjvp, symbolic_zeros=True)
def _conv_jvp(strides, padding, precision, primals, tangents):
    (x, w), (dx, dw) = primals, tangents
    conv = lambda x, w: _conv(x, w, strides, padding, precision)  # noqa: E731
    y = conv(x, w)
    kh, kw, ci, _ = w.shape

    def cpu_rule(x, dw):
        if kh * kw * ci <= PATCHES_MAX_K:
            return _weight_tangent_patches(x, dw, strides, padding, y.shape[1:3], precision)
        # Transposed in dw, lax's weight-gradient convolution reads x and g from the two
        # identity matmuls, so the NHWC -> CHWN / HWNC copies XLA adds are plain copies. The
        # outer one contracts I's axis 1, so that its transpose g @ I is a plain matmul.
        return _eye_matmul(conv(_eye_matmul(x), dw), eye_axis=1)

    # dx's term is lax's everywhere (its transpose is lax's input gradient); a symbolic zero
    # (the input images) costs nothing.
    terms = [] if type(dx) is SymbolicZero else [conv(dx, w)]
    if type(dw) is not SymbolicZero:
        terms.append(lax.platform_dependent(x, dw, cpu=cpu_rule, default=conv))
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)


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
    matmul-materialised transposes (True), or be lax's conv, derivatives included (False).
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
    if math.prod(rhs.shape[:3]) > PATCHES_MAX_K and not transpose_by_matmul:
        return _conv(lhs, rhs, strides, padding, precision)  # lax's rules, every mode
    return _conv_cpu_grad(lhs, rhs, strides, padding, precision)


# --------------------------------------------------------------------------------------- pool
def _pool_taps(x, k):
    b, h, w, c = x.shape
    return [lax.slice(x, (0, i, j, 0), (b, h - k + 1 + i, w - k + 1 + j, c), (1, k, k, 1))
            for i in range(k) for j in range(k)]


def _first_max(taps):
    """(max of the taps, int8 index of the first tap holding it) from one running comparison. An
    index found afterwards by comparing each tap with the max can miss every tap: XLA may recompute
    a fused producer of the taps with other rounding (seen on CPU in float64, AlexNet-BN)."""
    y, first = taps[0], jnp.zeros(taps[0].shape, jnp.int8)
    for t, tap in enumerate(taps[1:], 1):
        larger = tap > y
        first = jnp.where(larger, jnp.int8(t), first)
        y = jnp.where(larger, tap, y)
    # y as a selection, so that its own derivative (higher orders differentiate the rule) is the
    # first tap's, as the rule says (jnp.maximum's splits ties); NaN propagates as in lax's pool.
    y_max = lax.stop_gradient(functools.reduce(jnp.maximum, taps))
    return jnp.where(jnp.isnan(y_max), y_max, y), first


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool_tiles(x, k):
    return functools.reduce(jnp.maximum, _pool_taps(x, k))


@_max_pool_tiles.defjvp
def _pool_jvp(k, primals, tangents):
    (x,), (dx,) = primals, tangents
    y, first = _first_max(_pool_taps(x, k))
    b, ho, wo, c = y.shape
    tap = (lax.broadcasted_iota(jnp.int8, (1, 1, k, 1, k, 1), 2) * k
           + lax.broadcasted_iota(jnp.int8, (1, 1, k, 1, k, 1), 4))
    # Windows tile x, so [B, Ho, k, Wo, k, C] holds each window's taps on axes 2 and 4. The sum
    # has one nonzero term (exact); transposed it is broadcast + where + reshape: g routed to
    # the first maximum, as select_and_scatter does.
    dx6 = dx.reshape(b, ho, k, wo, k, c)
    dy = jnp.sum(jnp.where(tap == first[:, :, None, :, None, :], dx6, jnp.zeros((), dx.dtype)),
                 axis=(2, 4))
    return y, dy


def _strided_taps(xp, k, s, out_hw):
    """The k*k taps of every window of the (padded) xp [B, H, W, C]: k*k arrays [B, Ho, Wo, C]."""
    b, c, (ho, wo) = xp.shape[0], xp.shape[3], out_hw
    return [lax.slice(xp, (0, i, j, 0), (b, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, c), (1, s, s, 1))
            for i in range(k) for j in range(k)]


def _pool_geometry(shape, k, s, padding):
    pads = ((0, 0),) + tuple(padding) + ((0, 0),)
    out_hw = tuple((shape[d] + sum(padding[d - 1]) - k) // s + 1 for d in (1, 2))
    return pads, out_hw


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _max_pool_taps(x, k, s, padding):
    pads, out_hw = _pool_geometry(x.shape, k, s, padding)
    xp = jnp.pad(x, pads, constant_values=-jnp.inf)
    return functools.reduce(jnp.maximum, _strided_taps(xp, k, s, out_hw))


@_max_pool_taps.defjvp
def _pool_taps_jvp(k, s, padding, primals, tangents):
    (x,), (dx,) = primals, tangents
    pads, out_hw = _pool_geometry(x.shape, k, s, padding)
    y, first = _first_max(_strided_taps(jnp.pad(x, pads, constant_values=-jnp.inf), k, s, out_hw))
    # One nonzero term per output (exact). Transposed, each term is a strided pad of where(first ==
    # t, g, 0): elementwise work that XLA fuses, where select_and_scatter scatters with atomics on
    # GPU and through tuples of iotas on CPU. Overlapping windows add their gradients.
    zero = jnp.zeros((), dx.dtype)
    dtaps = _strided_taps(jnp.pad(dx, pads), k, s, out_hw)
    dy = functools.reduce(jnp.add, [jnp.where(first == t, d, zero) for t, d in enumerate(dtaps)])
    return y, dy


def max_pool(inputs, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID"):
    """flax.linen.max_pool with the gradients of the module docstring: non-overlapping k x k windows
    take the tiles path (bit-identical), other square windows with equal strides (the ResNet stem's
    3x3/2, AlexNet's 3x3/2) the strided-taps path; anything else is flax's."""
    with jax.named_scope("max_pool"):  # names its operations in profiles (benchmarks/step_profile.py)
        return _max_pool(inputs, tuple(window_shape), strides, padding)


def _max_pool(inputs, window_shape, strides, padding):
    strides = tuple(strides) if strides is not None else (1,) * len(window_shape)  # flax's default
    k, s = window_shape[0], strides[0]
    if not (inputs.ndim == 4 and window_shape == (k, k) and strides == (s, s) and 1 < k <= 11
            and jnp.issubdtype(inputs.dtype, jnp.floating)):
        return nn.max_pool(inputs, window_shape, strides, padding)
    if s == k and padding == "VALID" and inputs.shape[1] % k == 0 and inputs.shape[2] % k == 0:
        return _max_pool_tiles(inputs, k)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(inputs.shape[1:3], window_shape, strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _max_pool_taps(inputs, k, s, padding)
