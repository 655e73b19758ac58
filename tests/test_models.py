"""Tests for lars_jax.models: parameter counts against published figures, shapes and dtypes,
BatchNorm train/eval semantics, grouped BatchNorm against flax references, ResNet v1/v1.5."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lars_jax import models
from lars_jax.models import flops
from lars_jax.models import (GroupedBatchNorm, analytic_macs, create_model, forward_flops, lrn,
                             param_count)

SHAPES = {  # name -> (input shape for cheap tests, num_classes)
    "small_cnn": ((2, 28, 28, 1), 10),
    "mlp": ((2, 28, 28, 1), 10),
    "resnet18": ((2, 32, 32, 3), 1000),
    "resnet34": ((2, 32, 32, 3), 1000),
    "resnet50": ((2, 32, 32, 3), 1000),
    "resnet101": ((2, 32, 32, 3), 1000),
    "resnet20": ((2, 32, 32, 3), 10),
    "resnet56": ((2, 32, 32, 3), 10),
    "alexnet": ((2, 227, 227, 3), 1000),
    "alexnet_bn": ((2, 227, 227, 3), 1000),
}


def abstract_vars(model, shape, dtype=jnp.float32):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, dtype),
                                             train=False))


def init(model, shape, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros(shape), train=False)


def rand(shape, seed=0, loc=0.0, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(loc, scale, shape), jnp.float32)


def test_registry_covers_all_models():
    assert set(models.MODELS) == set(SHAPES)


def test_unknown_model_names_field_and_known_models():
    with pytest.raises(ValueError, match=r"^name: unknown model 'resnet51'; known: .*resnet50"):
        create_model("resnet51", num_classes=10)


# Published counts: torchvision model zoo docs (ResNets: convs without bias, BN scale+bias, fc
# with bias); BVLC bvlc_alexnet (60,965,224 with group 2 in conv2/4/5); akamaster/
# pytorch_resnet_cifar10 README for CIFAR ResNets with option-A shortcuts (0.27M, 0.85M).
# alexnet_bn and small_cnn are our own definitions: counts derived layer by layer in comments.
PUBLISHED = {
    ("resnet18", 224): 11_689_512,
    ("resnet34", 224): 21_797_672,
    ("resnet50", 224): 25_557_032,
    ("resnet101", 224): 44_549_160,
    ("resnet20", 32): 269_722,
    ("resnet56", 32): 853_018,
    ("alexnet", 227): 60_965_224,
    ("alexnet", 224): 60_965_224,
    # convs 34,848 + 614,400 + 884,736 + 1,327,104 + 884,736; BN 2*(96+256+384+384+256);
    # fc 37,752,832 + 16,781,312 + 4,097,000
    ("alexnet_bn", 227): 62_379_720,
    # 3*3*32 + 64 + 3*3*32*64 + 128 + (7*7*64*128 + 128) + (128*10 + 10)
    ("small_cnn", 28): 421_738,
}


@pytest.mark.parametrize("name,size", list(PUBLISHED))
def test_param_count_matches_published(name, size):
    (_, h, w, c), nc = SHAPES[name]
    v = abstract_vars(create_model(name, num_classes=nc), (1, size, size, c))
    assert param_count(v["params"]) == PUBLISHED[(name, size)]


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_shape_dtype_and_float32_params(name, dtype):
    shape, nc = SHAPES[name]
    model = create_model(name, num_classes=nc, dtype=dtype)
    v = abstract_vars(model, shape, dtype)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
    assert ("batch_stats" in v) == (name != "alexnet")
    for train in (False, True):
        out = jax.eval_shape(lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"],
                                                      rngs={"dropout": jax.random.key(1)})[0],
                             v, jax.ShapeDtypeStruct(shape, dtype))
        assert out.shape == (shape[0], nc) and out.dtype == jnp.float32


def _conv_eqns(jaxpr):
    """All conv_general_dilated equations in a jaxpr, including nested sub-jaxprs."""
    return (eqn for eqn in flops._eqns(jaxpr) if eqn.primitive.name == "conv_general_dilated")


def _convs(model, shape, dtype=jnp.float32):
    v = abstract_vars(model, shape, dtype)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        v, jax.ShapeDtypeStruct(shape, dtype))
    return list(_conv_eqns(jaxpr.jaxpr))


def test_bfloat16_convs_compute_in_bfloat16():
    convs = _convs(create_model("resnet20", num_classes=10, dtype=jnp.bfloat16), (2, 32, 32, 3),
                   jnp.bfloat16)
    assert len(convs) == 19
    assert all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)


def _stride2(convs):
    # (kernel size, output channels) of every stride-2 conv; kernels are HWIO in flax.
    return sorted((e.invars[1].aval.shape[0], e.invars[1].aval.shape[3]) for e in convs
                  if tuple(e.params["window_strides"]) == (2, 2))


def test_resnet50_v1_and_v15_differ_only_in_stride_position():
    shape = (1, 64, 64, 3)
    v15 = create_model("resnet50", num_classes=1000)
    v1 = create_model("resnet50", num_classes=1000, variant="v1")
    assert v15.variant == "v1.5"
    assert param_count(abstract_vars(v1, shape)["params"]) == 25_557_032
    c15, c1 = _convs(v15, shape), _convs(v1, shape)
    assert len(c15) == len(c1) == 53
    proj = [(1, 512), (1, 1024), (1, 2048)]
    assert _stride2(c15) == sorted([(7, 64), (3, 128), (3, 256), (3, 512)] + proj)
    assert _stride2(c1) == sorted([(7, 64), (1, 128), (1, 256), (1, 512)] + proj)
    # v1 runs the 3x3 of each downsampling block at the lower resolution: fewer MACs.
    assert analytic_macs(v1, shape) < analytic_macs(v15, shape)


def test_bad_variant_rejected():
    with pytest.raises(ValueError, match="variant"):
        abstract_vars(create_model("resnet50", num_classes=10, variant="v2"), (1, 32, 32, 3))


@pytest.mark.parametrize("name", ["small_cnn", "resnet20"])
def test_batchnorm_train_vs_eval(name):
    shape, nc = SHAPES[name]
    model = create_model(name, num_classes=nc)
    v = init(model, shape)
    a, b = rand(shape, 1), rand(shape, 2, loc=3.0, scale=2.0)
    mixed = a.at[1:].set(b[1:])  # same example 0, different batch mates

    def run(x, train):
        return model.apply(v, x, train=train, mutable=["batch_stats"])

    (ea, sa), (em, _) = run(a, False), run(mixed, False)
    np.testing.assert_allclose(ea[0], em[0], rtol=1e-5, atol=1e-5)
    assert jax.tree.all(jax.tree.map(lambda p, q: bool(jnp.array_equal(p, q)),
                                     sa["batch_stats"], v["batch_stats"]))
    (ta, st), (tm, _) = run(a, True), run(mixed, True)
    assert not np.allclose(ta[0], tm[0], atol=1e-3)
    assert not np.allclose(ta[0], ea[0], atol=1e-3)
    changed = jax.tree.map(lambda p, q: not bool(jnp.allclose(p, q)), st["batch_stats"],
                           v["batch_stats"])
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("name", ["small_cnn", "resnet20"])
def test_init_is_deterministic_per_seed(name):
    shape, nc = SHAPES[name]
    model = create_model(name, num_classes=nc)
    p0, p0b, p1 = (init(model, shape, s)["params"] for s in (0, 0, 1))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p0, p0b))
    # Every tensor with random init (kernels) must differ between seeds.
    kernels = [(a, b) for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(p0),
                                              jax.tree.leaves(p1)) if "kernel" in str(path)]
    assert kernels and all(not jnp.array_equal(a, b) for a, b in kernels)


def test_alexnet_dropout_uses_dropout_rng_only_in_train():
    model = create_model("alexnet", num_classes=10)
    x = rand((2, 224, 224, 3), 3)
    # Constant weights: a real init of 61M Gaussians dominates this test's time on CPU.
    v = jax.tree.map(lambda s: jnp.full(s.shape, 1e-3, s.dtype),
                     abstract_vars(model, (1, 224, 224, 3)))
    e = model.apply(v, x, train=False)  # no rng needed
    t1, t1b, t2 = (model.apply(v, x, train=True, rngs={"dropout": jax.random.key(k)})
                   for k in (1, 1, 2))
    assert np.array_equal(t1, t1b) and not np.allclose(t1, t2) and not np.allclose(t1, e)


def test_zero_init_last_bn():
    model = create_model("resnet20", num_classes=10, zero_init_last_bn=True)
    v = init(model, (1, 32, 32, 3))
    blocks = {k: b for k, b in v["params"].items() if "block" in k}
    assert len(blocks) == 9
    assert all(not np.any(b["bn2"]["scale"]) and np.all(b["bn1"]["scale"] == 1)
               for b in blocks.values())
    assert np.all(v["params"]["stem_bn"]["scale"] == 1)
    # Each block then starts as relu(shortcut): for a stride-1 block of post-ReLU inputs, x.
    _, state = model.apply(v, rand((2, 32, 32, 3), 4), train=False,
                           capture_intermediates=True, mutable=["intermediates"])
    i = state["intermediates"]
    np.testing.assert_allclose(i["stage1_block1"]["__call__"][0],
                               i["stage1_block0"]["__call__"][0], rtol=1e-6)
    assert np.all(init(create_model("resnet20", num_classes=10), (1, 32, 32, 3))
                  ["params"]["stage1_block0"]["bn2"]["scale"] == 1)


# --- grouped BatchNorm against flax nn.BatchNorm ---------------------------------------------

def _bn_pair(group_size, shape, seed=0):
    """Our BN and flax's with the same random scale/bias; returns (ours, flax, variables)."""
    ours = GroupedBatchNorm(use_running_average=False, group_size=group_size, momentum=0.9)
    ref = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    v = ref.init(jax.random.key(0), jnp.zeros(shape))
    c = shape[-1]
    v = {"params": {"scale": rand((c,), seed + 10, 1.0, 0.3), "bias": rand((c,), seed + 11)},
         "batch_stats": {"mean": rand((c,), seed + 12), "var": rand((c,), seed + 13, 2.0, 0.2)}}
    return ours, ref, v


@pytest.mark.parametrize("group_size", [None, 12])
def test_grouped_bn_equals_flax_batchnorm_when_group_is_whole_batch(group_size):
    shape = (12, 5, 5, 7)
    ours, ref, v = _bn_pair(group_size, shape)
    x = rand(shape, 20, loc=2.0, scale=3.0)
    yo, so = jax.jit(lambda v, x: ours.apply(v, x, mutable=["batch_stats"]))(v, x)
    yr, sr = jax.jit(lambda v, x: ref.apply(v, x, mutable=["batch_stats"]))(v, x)
    np.testing.assert_allclose(yo, yr, rtol=1e-6, atol=1e-6)
    for k in ("mean", "var"):
        np.testing.assert_allclose(so["batch_stats"][k], sr["batch_stats"][k], rtol=1e-6)
    ev_o = ours.clone(use_running_average=True).apply(v, x)
    ev_r = ref.clone(use_running_average=True).apply(v, x)
    np.testing.assert_allclose(ev_o, ev_r, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,g", [((12, 4, 4, 6), 3), ((16, 5), 4)])
def test_grouped_bn_equals_flax_batchnorm_per_group(shape, g):
    ours, ref, v = _bn_pair(g, shape, seed=1)
    x = rand(shape, 30, loc=-1.0, scale=2.0)
    # Shift each group differently so whole-batch statistics would give different answers.
    x = x + jnp.repeat(jnp.arange(shape[0] // g, dtype=jnp.float32) * 5.0, g).reshape(
        (-1,) + (1,) * (len(shape) - 1))
    y, s = ours.apply(v, x, mutable=["batch_stats"])
    ys, means, vars_ = [], [], []
    for k in range(shape[0] // g):
        yk, sk = ref.apply(v, x[k * g:(k + 1) * g], mutable=["batch_stats"])
        ys.append(yk)
        means.append(sk["batch_stats"]["mean"])
        vars_.append(sk["batch_stats"]["var"])
    np.testing.assert_allclose(y, jnp.concatenate(ys), rtol=1e-5, atol=1e-5)
    # Running update is linear in the statistic, so the mean of per-group updates is the update
    # with the mean of the group statistics.
    np.testing.assert_allclose(s["batch_stats"]["mean"], np.mean(means, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s["batch_stats"]["var"], np.mean(vars_, 0), rtol=1e-5, atol=1e-6)
    whole, _ = ref.apply(v, x, mutable=["batch_stats"])
    assert not np.allclose(y, whole, atol=1e-2)


def test_grouped_bn_rejects_batch_not_multiple_of_group():
    ours, _, v = _bn_pair(4, (6, 3))
    with pytest.raises(ValueError, match="bn_group_size"):
        ours.apply(v, jnp.ones((6, 3)), mutable=["batch_stats"])


def test_grouped_bn_keeps_dtype_and_float32_stats():
    ours = GroupedBatchNorm(use_running_average=False, group_size=2, dtype=jnp.bfloat16)
    x = rand((4, 3, 3, 5), 5).astype(jnp.bfloat16)
    v = ours.init(jax.random.key(0), x)
    y, s = ours.apply(v, x, mutable=["batch_stats"])
    assert y.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((v["params"], s)))


def test_model_with_bn_groups_equals_model_on_each_group():
    model = create_model("small_cnn", num_classes=10, bn_group_size=4)
    whole = create_model("small_cnn", num_classes=10)
    v = init(whole, (1, 28, 28, 1))
    x = rand((8, 28, 28, 1), 6)
    y = model.apply(v, x, train=True, mutable=["batch_stats"])[0]
    parts = [whole.apply(v, x[i:i + 4], train=True, mutable=["batch_stats"])[0] for i in (0, 4)]
    np.testing.assert_allclose(y, jnp.concatenate(parts), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("group_size,expect_collective", [(4, False), (None, True)])
def test_grouped_bn_needs_no_communication_when_sharded(group_size, expect_collective):
    devices = np.array(jax.devices()[:8])
    assert devices.size == 8
    mesh = Mesh(devices, ("data",))
    bn = GroupedBatchNorm(use_running_average=False, group_size=group_size)
    x = rand((32, 4, 4, 3), 7)
    v = bn.init(jax.random.key(0), x)
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    # Only the normalised output: the running-average update (a tiny mean over groups) is
    # dropped, so any collective left would be in the normalisation itself.
    f = jax.jit(lambda v, x: bn.apply(v, x, mutable=["batch_stats"])[0],
                out_shardings=NamedSharding(mesh, P("data")))
    hlo = f.lower(v, xs).compile().as_text()
    has_collective = any(op in hlo for op in ("all-reduce", "all-gather", "collective-permute"))
    assert has_collective == expect_collective
    ref = bn.apply(v, x, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(f(v, xs), ref, rtol=1e-5, atol=1e-5)


# --- AlexNet building blocks against direct definitions ---------------------------------------

def test_lrn_matches_caffe_formula():
    x = np.asarray(rand((2, 3, 3, 9), 8, scale=20.0))
    n, alpha, beta = 5, 1e-4, 0.75
    ref = np.empty_like(x)
    for c in range(x.shape[-1]):
        window = x[..., max(0, c - n // 2):c + n // 2 + 1]
        ref[..., c] = x[..., c] / (1 + alpha / n * (window ** 2).sum(-1)) ** beta
    np.testing.assert_allclose(lrn(jnp.asarray(x)), ref, rtol=1e-5)


def test_grouped_conv_is_caffe_group():
    """feature_group_count=2 == two independent convs on the channel halves (Caffe `group`)."""
    conv = nn.Conv(6, (3, 3), feature_group_count=2, padding="VALID")
    x = rand((1, 7, 7, 4), 9)
    v = conv.init(jax.random.key(0), x)
    k, b = v["params"]["kernel"], v["params"]["bias"]
    assert k.shape == (3, 3, 2, 6)
    dn = ("NHWC", "HWIO", "NHWC")
    halves = [jax.lax.conv_general_dilated(x[..., 2 * i:2 * i + 2], k[..., 3 * i:3 * i + 3],
                                           (1, 1), "VALID", dimension_numbers=dn)
              for i in range(2)]
    np.testing.assert_allclose(conv.apply(v, x), jnp.concatenate(halves, -1) + b, rtol=1e-5)


# --- FLOPs --------------------------------------------------------------------------------------

def _taps(n, k=3, pad=1):
    """Kernel taps that land inside an n-wide input, summed over a stride-1 'same' output row."""
    return sum(min(n, i - pad + k) - max(0, i - pad) for i in range(n))


def test_forward_flops_small_cnn_matches_analytic_count():
    # XLA counts 2 FLOPs per multiply-add and skips taps on the zero padding, so the reference
    # counts only taps inside the image: conv1 (1 -> 32 ch, 28x28), conv2 (32 -> 64, 14x14), fcs.
    macs = (_taps(28) ** 2 * 32 + _taps(14) ** 2 * 64 * 32 + 3136 * 128 + 128 * 10)
    full = 28 * 28 * 32 * 9 + 14 * 14 * 64 * 9 * 32 + 3136 * 128 + 128 * 10
    assert macs < full
    model = create_model("small_cnn", num_classes=10)
    f1, f4 = forward_flops(model, (1, 28, 28, 1)), forward_flops(model, (4, 28, 28, 1))
    # The rest is elementwise work (BN, ReLU, pooling): a few percent.
    assert 2 * macs <= f1 <= 1.05 * 2 * macs
    assert f4 == pytest.approx(f1, rel=0.02)


@pytest.mark.parametrize("name,size,gmacs", [
    ("resnet50", 224, 4.09),  # torchvision docs: 4.09 GFLOPS (multiply-adds)
    ("resnet18", 224, 1.81),  # torchvision docs: 1.81
    ("alexnet", 227, 0.72),   # bvlc_alexnet with groups: 724M multiply-adds
    ("alexnet", 224, 0.72),
    ("resnet20", 32, 0.04),   # ~41M, as quoted for CIFAR ResNet-20
])
def test_analytic_macs_match_published(name, size, gmacs):
    model = create_model(name, num_classes=SHAPES[name][1])
    assert round(analytic_macs(model, (1, size, size, 3)) / 1e9, 2) == gmacs
