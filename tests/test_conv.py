"""lars_jax.models.conv: the CPU-tuned conv and max pool against lax / flax (values and gradients),
their fallbacks, the per-platform choice of the gradient rule, and the models built on them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from lars_jax.models import conv, create_model

DN = ("NHWC", "HWIO", "NHWC")


def rand(shape, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def grads(conv_fn, x, w, strides, padding, **kw):
    """Forward value and (dx, dw) of a non-linear loss of the conv."""
    def loss(x, w):
        y = conv_fn(x, w, strides, padding, dimension_numbers=DN, **kw)
        return jnp.sum(jnp.sin(y.astype(jnp.float32))), y
    (_, y), g = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w)
    return y, g


# (x shape, kernel shape, strides, padding, transpose_by_matmul): covers the patches path
# (kh*kw*Cin <= 32), the matmul-transposed path, lax's rule (False), strides, 1x1 projections,
# asymmetric and string padding, a 7x7/2 stem, odd sizes.
CASES = [
    ((4, 8, 8, 1), (3, 3, 1, 6), (1, 1), ((1, 1), (1, 1)), True),
    ((4, 9, 9, 3), (3, 3, 3, 6), (2, 2), ((1, 1), (1, 1)), True),
    ((2, 16, 16, 3), (7, 7, 3, 8), (2, 2), ((3, 3), (3, 3)), True),
    ((4, 8, 8, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), True),
    ((4, 8, 8, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1)), True),
    ((4, 7, 7, 16), (3, 3, 16, 8), (2, 2), ((0, 1), (1, 0)), True),
    ((4, 9, 9, 8), (1, 1, 8, 16), (2, 2), ((0, 0), (0, 0)), True),
    ((4, 8, 8, 40), (1, 1, 40, 16), (1, 1), "VALID", True),
    ((4, 8, 8, 16), (3, 3, 16, 8), (1, 1), "SAME", True),
    ((4, 8, 8, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), False),
]


@pytest.mark.parametrize("xs,ws,strides,padding,tbm", CASES)
def test_conv_matches_lax_values_and_gradients(xs, ws, strides, padding, tbm):
    x, w = rand(xs, 1), rand(ws, 2)
    y0, (dx0, dw0) = grads(lax.conv_general_dilated, x, w, strides, padding)
    y1, (dx1, dw1) = grads(conv.conv_general_dilated, x, w, strides, padding,
                           transpose_by_matmul=tbm)
    np.testing.assert_array_equal(y1, y0)  # the forward pass is lax's conv itself
    np.testing.assert_array_equal(dx1, dx0)  # so is the input gradient
    # The weight gradient sums the same products in another order.
    np.testing.assert_allclose(dw1, dw0, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(dw0))))


@pytest.mark.parametrize("xs,ws,strides,padding,tbm", CASES)
def test_conv_jvp_and_hvp_match_lax(xs, ws, strides, padding, tbm):
    """Forward mode (the weight tangent is each path's own formula) and forward-over-reverse."""
    x, w, dx, dw = rand(xs, 1), rand(ws, 2), rand(xs, 3), rand(ws, 4)

    def derivatives(conv_fn, **kw):
        f = lambda x, w: conv_fn(x, w, strides, padding, dimension_numbers=DN, **kw)  # noqa: E731
        loss = lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # noqa: E731
        return jax.jit(lambda x, w, dx, dw: (
            jax.jvp(f, (x, w), (dx, dw)),
            jax.jvp(lambda w: f(x, w), (w,), (dw,))[1],  # dx a symbolic zero
            jax.jvp(lambda x: f(x, w), (x,), (dx,))[1],  # dw a symbolic zero
            jax.jvp(jax.grad(loss, (0, 1)), (x, w), (dx, dw))[1]))(x, w, dx, dw)

    (y0, t0), tw0, tx0, (hx0, hw0) = derivatives(lax.conv_general_dilated)
    (y1, t1), tw1, tx1, (hx1, hw1) = derivatives(conv.conv_general_dilated, transpose_by_matmul=tbm)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(tx1, tx0)  # the input's tangent is lax's conv itself
    for a, b in ((t1, t0), (tw1, tw0), (hx1, hx0), (hw1, hw0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("ws", [(3, 3, 1, 8), (3, 3, 16, 8)])
def test_conv_bfloat16_close_to_lax(ws):
    x, w = rand((4, 8, 8, ws[2]), 3, jnp.bfloat16), rand(ws, 4, jnp.bfloat16)
    y0, (dx0, dw0) = grads(lax.conv_general_dilated, x, w, (1, 1), ((1, 1), (1, 1)))
    y1, (dx1, dw1) = grads(conv.conv_general_dilated, x, w, (1, 1), ((1, 1), (1, 1)))
    assert y1.dtype == dw1.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y1, y0)
    scale = float(jnp.max(jnp.abs(dw0.astype(jnp.float32))))
    np.testing.assert_allclose(dw1.astype(jnp.float32), dw0.astype(jnp.float32), atol=2e-2 * scale)
    np.testing.assert_allclose(dx1.astype(jnp.float32), dx0.astype(jnp.float32), atol=2e-2 * float(
        jnp.max(jnp.abs(dx0.astype(jnp.float32)))))


@pytest.mark.parametrize("kw", [dict(feature_group_count=2), dict(rhs_dilation=(2, 2)),
                                dict(lhs_dilation=(2, 2))])
def test_unsupported_convs_fall_back_to_lax(kw):
    x = rand((2, 8, 8, 4), 5)
    w = rand((3, 3, 4 // kw.get("feature_group_count", 1), 6), 6)
    y0, g0 = grads(lambda *a, **k: lax.conv_general_dilated(*a, **k, **kw), x, w, (1, 1),
                   ((1, 1), (1, 1)))
    y1, g1 = grads(lambda *a, **k: conv.conv_general_dilated(*a, **k, **kw), x, w, (1, 1),
                   ((1, 1), (1, 1)))
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g1, g0):
        np.testing.assert_array_equal(a, b)


def test_flax_conv_with_it_has_the_same_params_and_outputs():
    x = rand((2, 8, 8, 3), 7)
    plain = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    fast = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                   conv_general_dilated=conv.conv_general_dilated)
    v0, v1 = plain.init(jax.random.key(0), x), fast.init(jax.random.key(0), x)
    assert jax.tree.structure(v0) == jax.tree.structure(v1)
    np.testing.assert_array_equal(v0["params"]["kernel"], v1["params"]["kernel"])
    np.testing.assert_array_equal(plain.apply(v0, x), fast.apply(v1, x))


@pytest.mark.parametrize("ci", [1, 16])  # the patches and the matmul-transposed paths
def test_cpu_rule_only_on_cpu(ci):
    # The weight gradient through a matmul is lowered for CPU only; other platforms get lax's
    # rules: the same convolutions as lax's own gradient and its forward-over-reverse, no dot.
    # Cross-platform lowering needs no GPU.
    x, w, v = rand((2, 8, 8, ci), 8), rand((3, 3, ci, 8), 9), rand((3, 3, ci, 8), 10)

    def programs(conv_fn):
        loss = lambda x, w: jnp.sum(conv_fn(  # noqa: E731
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN) ** 2)
        grad = jax.jit(jax.grad(loss, (0, 1)))
        hvp = jax.jit(lambda x, w, v: jax.jvp(lambda w: jax.grad(loss, 1)(x, w), (w,), (v,)))
        return [jax.export.export(f, platforms=[p])(*a).mlir_module()
                for f, a in ((grad, (x, w)), (hvp, (x, w, v))) for p in ("cpu", "cuda")]

    cpu, gpu, hvp_cpu, hvp_gpu = programs(conv.conv_general_dilated)
    _, lax_gpu, _, lax_hvp_gpu = programs(lax.conv_general_dilated)
    assert "dot_general" in cpu and "dot_general" in hvp_cpu
    assert "dot_general" not in gpu and "dot_general" not in hvp_gpu
    assert gpu.count("stablehlo.convolution") == lax_gpu.count("stablehlo.convolution")
    assert hvp_gpu.count("stablehlo.convolution") == lax_hvp_gpu.count("stablehlo.convolution")


# ----------------------------------------------------------------------------------- max pool
def pool_vjp(pool, x, g, window, strides, padding="VALID"):
    y, vjp = jax.vjp(lambda x: pool(x, window, strides, padding), x)
    return y, vjp(g)[0]


@pytest.mark.parametrize("k,dtype", [(2, jnp.float32), (3, jnp.float32), (2, jnp.bfloat16)])
def test_max_pool_matches_flax_bitwise_including_ties(k, dtype):
    # Small integers after a ReLU: most windows hold several equal maxima (zeros and others);
    # the gradient must go to the first one, as lax's select_and_scatter does.
    rng = np.random.default_rng(k)
    x = jnp.asarray(np.maximum(rng.integers(-2, 3, (3, 6 * k, 4 * k, 5)), 0), dtype)
    g = rand((3, 6, 4, 5), 10, dtype)
    y0, dx0 = pool_vjp(nn.max_pool, x, g, (k, k), (k, k))
    y1, dx1 = pool_vjp(conv.max_pool, x, g, (k, k), (k, k))
    assert y1.dtype == dx1.dtype == dtype
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    y2, dx2 = pool_vjp(jax.jit(conv.max_pool, static_argnums=(1, 2, 3)), x, g, (k, k), (k, k))
    np.testing.assert_array_equal(dx2, dx0)


@pytest.mark.parametrize("k,dtype", [(2, jnp.float32), (3, jnp.float32), (2, jnp.bfloat16)])
def test_max_pool_jvp_matches_flax_bitwise_including_ties(k, dtype):
    # Forward mode takes the tangent of the first maximum too, so jvp and vjp are transposes.
    rng = np.random.default_rng(k + 10)
    x = jnp.asarray(np.maximum(rng.integers(-2, 3, (3, 6 * k, 4 * k, 5)), 0), dtype)
    dx = rand(x.shape, 15, dtype)
    y0, t0 = jax.jvp(lambda x: nn.max_pool(x, (k, k), (k, k)), (x,), (dx,))
    y1, t1 = jax.jit(lambda x, dx: jax.jvp(lambda x: conv.max_pool(x, (k, k), (k, k)), (x,), (dx,)))(
        x, dx)
    assert t1.dtype == dtype
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(t1, t0)


@pytest.mark.parametrize("strides,out", [((2, 2), 4), (None, 7)])  # flax's default stride is 1
def test_max_pool_random_values_and_default_strides(strides, out):
    x, g = rand((2, 8, 8, 3), 11), rand((2, out, out, 3), 12)
    y0, dx0 = pool_vjp(nn.max_pool, x, g, (2, 2), strides)
    y1, dx1 = pool_vjp(conv.max_pool, x, g, (2, 2), strides)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)


OVERLAPPING = [  # (window, strides, padding, input shape)
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 9, 9, 3)),   # ResNet stem, odd size
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 8, 10, 3)),  # ResNet stem, even sizes
    ((3, 3), (2, 2), "VALID", (2, 9, 9, 3)),            # AlexNet
    ((3, 3), (1, 1), "SAME", (2, 6, 6, 3)),             # stride 1
    ((2, 2), (2, 2), "VALID", (2, 7, 7, 3)),            # odd size: the last row and column dropped
    ((2, 2), (3, 3), ((0, 1), (1, 0)), (2, 8, 8, 3)),   # stride > window, asymmetric padding
]


@pytest.mark.parametrize("window,strides,padding,shape", OVERLAPPING)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_max_pool_strided_taps_match_flax_including_ties(window, strides, padding, shape, dtype):
    """Values bit for bit; the gradient goes to each window's first maximum and overlapping windows
    add theirs: with integer cotangents every sum is exact, so flax's select_and_scatter must agree
    bit for bit whatever the order of the additions."""
    rng = np.random.default_rng(sum(shape))
    x = jnp.asarray(np.maximum(rng.integers(-2, 3, shape), 0), dtype)  # many tied maxima
    y0 = nn.max_pool(x, window, strides, padding)
    g = jnp.asarray(rng.integers(-8, 9, y0.shape), dtype)
    _, dx0 = pool_vjp(nn.max_pool, x, g, window, strides, padding)
    y1, dx1 = pool_vjp(jax.jit(conv.max_pool, static_argnums=(1, 2, 3)), x, g, window, strides,
                       padding if isinstance(padding, str) else tuple(padding))
    assert y1.dtype == dx1.dtype == dtype
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    t0 = jax.jvp(lambda x: nn.max_pool(x, window, strides, padding), (x,), (g.dtype.type(1) * x + 1,))[1]
    t1 = jax.jvp(lambda x: conv.max_pool(x, window, strides, padding), (x,), (g.dtype.type(1) * x + 1,))[1]
    np.testing.assert_array_equal(t1, t0)


def test_max_pool_strided_taps_random_values_and_second_derivative():
    x, g = rand((2, 9, 9, 4), 13), rand((2, 5, 5, 4), 14)
    args = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    y0, dx0 = pool_vjp(nn.max_pool, x, g, *args)
    y1, dx1 = pool_vjp(conv.max_pool, x, g, *args)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-6)  # overlapping windows add in another order
    # forward-over-reverse: a Hessian-vector product through the pool (zero a.e.; it must run)
    v = rand(x.shape, 15)
    hvp = lambda pool: jax.jvp(jax.grad(lambda x: jnp.sum(jnp.sin(pool(x, *args)))), (x,), (v,))[1]  # noqa: E731
    np.testing.assert_allclose(hvp(conv.max_pool), hvp(nn.max_pool), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("window,strides,padding", [((3, 3), (2, 2), ((1, 1), (1, 1))), ((2, 2), (2, 2), "VALID")])
def test_max_pool_propagates_nan_and_inf_as_flax(window, strides, padding):
    """Under differentiation too: a diverging run must show its NaN, not have the pool hide it."""
    x = rand((1, 6, 6, 2), 16).at[0, 1, 1, 0].set(jnp.nan).at[0, 4, 4, 1].set(jnp.inf)
    x = x.at[0, 2, 5, 1].set(-jnp.inf)
    y0 = jax.jvp(lambda x: nn.max_pool(x, window, strides, padding), (x,), (x,))[0]
    y1 = jax.jvp(lambda x: conv.max_pool(x, window, strides, padding), (x,), (x,))[0]  # the rule's value
    np.testing.assert_array_equal(y1, y0)  # NaN where flax has NaN, inf where it has inf
    np.testing.assert_array_equal(conv.max_pool(x, window, strides, padding), nn.max_pool(x, window, strides, padding))


@pytest.mark.parametrize("window,strides", [((2, 3), (2, 3)), ((3, 3), (1, 2)), ((1, 1), (1, 1))])
def test_max_pool_other_windows_fall_back_to_flax(window, strides):
    x = rand((2, 9, 9, 3), 13)
    y0 = nn.max_pool(x, window, strides, "VALID")
    y1, dx1 = pool_vjp(conv.max_pool, x, jnp.ones_like(y0), window, strides)
    _, dx0 = pool_vjp(nn.max_pool, x, jnp.ones_like(y0), window, strides)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)


# ------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name,shape", [("small_cnn", (8, 28, 28, 1)), ("resnet20", (4, 32, 32, 3)),
                                        # the stem's overlapping pool
                                        pytest.param("resnet18", (2, 32, 32, 3), marks=pytest.mark.slow)])
def test_models_train_gradients_match_plain_lax(name, shape, monkeypatch):
    """The models with these ops against the same models with lax's conv and flax's pool."""
    model = create_model(name, num_classes=10)
    x = rand(shape, 14)
    labels = jnp.arange(shape[0]) % 10
    variables = model.init(jax.random.key(0), x, train=False)

    def loss_and_grads():
        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                    mutable=["batch_stats"])
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
        return jax.jit(jax.value_and_grad(loss))(variables["params"])

    fast_loss, fast = loss_and_grads()
    import lars_jax.models.resnet as resnet
    import lars_jax.models.small as small
    monkeypatch.setattr(small, "_CONV", lax.conv_general_dilated)
    monkeypatch.setattr(conv, "max_pool", nn.max_pool)
    monkeypatch.setattr(conv, "conv_general_dilated", lax.conv_general_dilated)
    assert resnet.conv_ops is conv  # the patched module attribute is what resnet.py calls
    ref_loss, ref = loss_and_grads()
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-6)
    for path, a in jax.tree_util.tree_leaves_with_path(fast):
        b = ref
        for p in path:
            b = b[p.key]
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * float(jnp.max(jnp.abs(b))) + 1e-7,
                                   err_msg=jax.tree_util.keystr(path))
