"""Forward-mode autodiff through every family of registered models, as sharpness /
Hessian-eigenvalue / linearisation studies use it: jvp and linearize of the train-mode loss against <grad, v>, and
Hessian-vector products forward-over-reverse and reverse-over-forward against reverse-over-reverse.

The reference is float64 (models built with dtype=float64, params and tangents float64). The
models still cast their logits to float32 and the loss is float32 (lars_jax.steps.cross_entropy),
so each side carries float32 rounding of the logits and their derivatives. Tolerances, with what
that rounding gave (a few seeds; small_cnn, mlp, resnet20): <grad, v> cancels (|<g, v>| is
~1% of sum |g_i v_i|), so the jvp is compared to 1e-6 of sum |g_i v_i| (seen: <= 1.2e-9); HVP
entries to 1e-5 of the largest |Hv| entry plus 1e-5 relative (seen: <= 4e-8 of the largest).
A wrong or non-transposable tangent rule is off by far more, or raises.

Each test draws its inputs from its own seed (tests/conftest.py: reported on failure,
LARS_JAX_TEST_SEED=n replays one).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lars_jax.models import MODELS, create_model
from lars_jax.models.resnet import BottleneckBlock, ResNet
from lars_jax.steps import cross_entropy

CLASSES = 10
slow = pytest.mark.slow
# Each family once, at its smallest depth: a deeper member stacks the same blocks (ResNet-34 is
# ResNet-18's, ResNet-101 ResNet-50's, ResNet-56 ResNet-20's), so its derivatives add compile time,
# not coverage. "bottleneck" is ResNet-50's module with its three kinds of block (projection at stride 1,
# identity, projection at stride 2) in two stages of width 16.
FAMILY = {"resnet34": "resnet18", "resnet50": "bottleneck", "resnet101": "bottleneck", "resnet56": "resnet20"}
BUILDERS = {"bottleneck": functools.partial(ResNet, stage_sizes=(2, 1), block_cls=BottleneckBlock,
                                            num_filters=16)}
# The smallest inputs each model takes (ImageNet ResNets: 32x32 reaches 1x1 in the last stage;
# AlexNet pads anything to 227x227, so 8x8 costs the same as 227x227).
SHAPES = {
    "small_cnn": (2, 8, 8, 1),
    "mlp": (2, 8, 8, 1),
    "resnet18": (2, 32, 32, 3),
    "bottleneck": (2, 32, 32, 3),
    "resnet20": (2, 8, 8, 3),
    "alexnet": (2, 8, 8, 3),
    "alexnet_bn": (2, 8, 8, 3),
}
# The quick tier (-m "not slow") keeps small_cnn and mlp: conv.py's patches, matmul-transposed and
# pool paths, and a net without conv. AlexNets: 60M parameters.
SLOW = {"resnet18", "bottleneck", "resnet20", "alexnet", "alexnet_bn"}
NAMES = [pytest.param(n, marks=slow) if n in SLOW else n for n in SHAPES]


def _blocks(factory):
    """(module class, block class) a registry entry or builder makes."""
    keywords = getattr(factory, "keywords", {})
    cls = getattr(factory, "model_class", None) or getattr(factory, "func", factory)
    return cls, keywords.get("block_cls")


def test_every_model_is_covered_by_its_family():
    for name, factory in MODELS.items():
        member = FAMILY.get(name, name)
        assert member in SHAPES, name
        assert _blocks(factory) == _blocks(BUILDERS.get(member, MODELS.get(member))), name


def problem(name, seed):
    """(loss, params, v): the train-mode loss of lars_jax/train.py, float64 params and tangent."""
    model = (BUILDERS[name](num_classes=CLASSES, dtype=jnp.float64) if name in BUILDERS
             else create_model(name, num_classes=CLASSES, dtype=jnp.float64))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(SHAPES[name]))
    labels = jnp.asarray(rng.integers(0, CLASSES, x.shape[0]))
    # Shapes only: model.init runs the net op by op, slower than the tests themselves.
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)

    def draw(s):  # fan-in scaled weights, vectors (biases, BatchNorm) near 1: logits of order 1
        scale = math.prod(s.shape[:-1]) ** -0.5 if len(s.shape) > 1 else 0.1
        return jnp.asarray(rng.standard_normal(s.shape) * scale + (len(s.shape) == 1))

    params = jax.tree.map(draw, shapes["params"])
    v = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
    # Train mode normalises with batch statistics; the running ones are only updated.
    stats = jax.tree.map(lambda s: jnp.ones(s.shape), shapes.get("batch_stats", {}))
    dropout = jax.random.key(1)  # the same dropout mask in every evaluation

    def loss(p):
        logits, _ = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                mutable=["batch_stats"], rngs={"dropout": dropout})
        return cross_entropy(logits, labels, CLASSES).mean()

    return loss, params, v


def tree_vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("name", NAMES)
def test_jvp_and_linearize_equal_grad_inner_product(name, seed):
    with jax.enable_x64(True):
        loss, params, v = problem(name, seed)
        jvp, lin = jax.jit(lambda p, v: (jax.jvp(loss, (p,), (v,))[1],
                                         jax.linearize(loss, p)[1](v)))(params, v)
        g = flat(jax.jit(jax.grad(loss))(params))
    v = flat(v)
    ref, scale = float(g @ v), float(np.abs(g) @ np.abs(v))
    for what, t in (("jvp", jvp), ("linearize", lin)):
        assert abs(float(t) - ref) <= 1e-6 * scale, f"seed={seed}: {what} {t}, <grad, v> {ref}"


@pytest.mark.parametrize("name", NAMES)
def test_hvp_forward_over_reverse_equals_reverse_over_reverse(name, seed):
    with jax.enable_x64(True):
        loss, params, v = problem(name, seed)
        hvps = jax.jit(lambda p, v: (
            jax.grad(lambda p: tree_vdot(jax.grad(loss)(p), v))(p),  # reverse over reverse
            jax.jvp(jax.grad(loss), (p,), (v,))[1],  # forward over reverse
            jax.grad(lambda p: jax.jvp(loss, (p,), (v,))[1])(p)))(params, v)  # reverse over forward
    ref, *others = map(flat, hvps)
    assert ref.dtype == np.float64
    for what, hvp in zip(("forward over reverse", "reverse over forward"), others):
        np.testing.assert_allclose(hvp, ref, rtol=1e-5, atol=1e-5 * np.max(np.abs(ref)),
                                   err_msg=f"seed={seed}: {what}")
