"""lars_jax.optim against a float64 NumPy reference written from the paper's formula, and against optax."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from helpers import max_rel_diff
from lars_jax import optim

SHAPES = {  # a conv kernel, a dense kernel, a bias and a BatchNorm scale/bias
    "conv": {"kernel": (3, 3, 8, 16), "bias": (16,)},
    "bn": {"scale": (16,), "bias": (16,)},
    "dense": {"kernel": (64, 10)},
}
NDIM_EXCLUDED = {"conv": {"kernel": False, "bias": True}, "bn": {"scale": True, "bias": True},
                 "dense": {"kernel": False}}


def random_tree(rng, scale=1.0):
    return jax.tree.map(lambda s: (scale * rng.standard_normal(s)).astype(np.float32), SHAPES,
                        is_leaf=lambda x: isinstance(x, tuple))


def numpy_lars_updates(params, grads_seq, lr_fn, *, momentum, weight_decay, eta, eps, nesterov,
                       excluded, denominator):
    """Algorithm 1 of You et al. in float64: returns the update applied at each step."""
    w = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    v = jax.tree.map(np.zeros_like, w)
    all_updates = []
    for t, grads in enumerate(grads_seq):
        lr = float(lr_fn(t))
        flat_w, treedef = jax.tree.flatten(w)
        flat_v, flat_g = treedef.flatten_up_to(v), treedef.flatten_up_to(grads)
        flat_x = treedef.flatten_up_to(excluded)
        new_w, new_v, upd = [], [], []
        for wl, vl, gl, skip in zip(flat_w, flat_v, flat_g, flat_x):
            gl = np.asarray(gl, np.float64)
            if skip:
                ratio, d = 1.0, gl
            else:
                wn, gn = np.linalg.norm(wl), np.linalg.norm(gl)
                d = gl + weight_decay * wl
                # paper (TF, MLPerf): 1 where ||w|| or ||g|| is 0; optax: where ||w|| or ||g + beta*w|| is
                if denominator == "paper":
                    den, tested = gn + weight_decay * wn, gn
                else:
                    den = tested = np.linalg.norm(d)
                ratio = 1.0 if (wn == 0 or tested == 0) else eta * wn / (den + eps)
            vl = momentum * vl + lr * ratio * d
            u = -(momentum * vl + lr * ratio * d) if nesterov else -vl
            new_w.append(wl + u), new_v.append(vl), upd.append(u)
        w, v = treedef.unflatten(new_w), treedef.unflatten(new_v)
        all_updates.append(treedef.unflatten(upd))
    return all_updates


def run_tx(tx, params, grads_seq):
    state = tx.init(params)
    step = jax.jit(tx.update)
    out = []
    for grads in grads_seq:
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


def max_rel_error(got_seq, ref_seq):
    """max over steps and leaves of max|got - ref| / max|ref|."""
    errs = [float(np.max(np.abs(np.asarray(g, np.float64) - r)) / max(np.max(np.abs(r)), 1e-30))
            for got, ref in zip(got_seq, ref_seq)
            for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref))]
    return max(errs)


@pytest.mark.parametrize("denominator,nesterov,weight_decay,eta,eps", [
    ("paper", False, 5e-4, 0.001, 0.0),
    ("paper", True, 1e-2, 0.02, 1e-8),
    ("optax", False, 5e-4, 0.001, 0.0),
    ("optax", True, 1e-3, 0.01, 1e-9),
])
def test_lars_matches_float64_reference(denominator, nesterov, weight_decay, eta, eps, rng):
    params = random_tree(rng)
    grads_seq = [random_tree(rng, scale=10.0 ** rng.uniform(-3, 1)) for _ in range(6)]
    schedule = optax.linear_schedule(0.5, 2.0, 6)  # a schedule LR, read from the state's count
    tx = optim.lars(schedule, momentum=0.9, weight_decay=weight_decay, trust_coefficient=eta, eps=eps,
                    nesterov=nesterov, denominator=denominator)
    got = run_tx(tx, params, grads_seq)
    ref = numpy_lars_updates(params, grads_seq, schedule, momentum=0.9, weight_decay=weight_decay, eta=eta,
                             eps=eps, nesterov=nesterov, excluded=NDIM_EXCLUDED, denominator=denominator)
    err = max_rel_error(got, ref)
    print(f"max relative error vs float64 ({denominator}, nesterov={nesterov}): {err:.2e}")
    assert err < 1e-5


def test_paper_and_optax_denominators_differ(rng):
    params, grads = random_tree(rng), random_tree(rng)
    a = run_tx(optim.lars(1.0, weight_decay=0.1, denominator="paper"), params, [grads])[0]
    b = run_tx(optim.lars(1.0, weight_decay=0.1, denominator="optax"), params, [grads])[0]
    assert not np.allclose(a["dense"]["kernel"], b["dense"]["kernel"], rtol=1e-3)
    np.testing.assert_array_equal(a["conv"]["bias"], b["conv"]["bias"])  # excluded: same plain SGD


@pytest.mark.parametrize("nesterov", [False, True])
def test_optax_denominator_equals_optax_lars(nesterov, rng):
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(5)]
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    ours = optim.lars(0.3, momentum=0.9, weight_decay=1e-3, trust_coefficient=0.01, eps=1e-9,
                      nesterov=nesterov, denominator="optax")
    theirs = optax.lars(0.3, weight_decay=1e-3, weight_decay_mask=mask, trust_coefficient=0.01, eps=1e-9,
                        trust_ratio_mask=mask, momentum=0.9, nesterov=nesterov)
    # Relative to each tensor's largest entry: an entry where g and beta * w nearly cancel differs
    # by rounding alone (lars_jax scales g and beta * w before adding them, optax after).
    for a, b in zip(run_tx(ours, params, grads_seq), run_tx(theirs, params, grads_seq)):
        assert max_rel_diff(b, a) < 1e-6


def test_zero_norm_guard(rng):
    params, grads = random_tree(rng), random_tree(rng)
    params["dense"]["kernel"] = np.zeros_like(params["dense"]["kernel"])  # ||w|| = 0
    grads["conv"]["kernel"] = np.zeros_like(grads["conv"]["kernel"])  # ||g|| = 0
    lr, beta = 0.5, 0.01
    upd = run_tx(optim.lars(lr, weight_decay=beta), params, [grads])[0]
    # ratio 1: first step's update is -lr * (g + beta * w), with no eta factor
    np.testing.assert_allclose(upd["dense"]["kernel"], -lr * grads["dense"]["kernel"], rtol=1e-6)
    np.testing.assert_allclose(upd["conv"]["kernel"], -lr * beta * params["conv"]["kernel"], rtol=1e-6)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(upd))


@pytest.mark.parametrize("denominator,expected", [("optax", -0.001), ("paper", -0.0005)])
def test_zero_gradient_rule_of_each_denominator(denominator, expected):
    # g = 0, w = 1, lr 1, beta 5e-4, eta 0.001. optax tests ||g + beta*w|| != 0 and keeps
    # lambda = eta*||w|| / (beta*||w||) = 2: update -2 * beta = -0.001. The paper's rule (TF's
    # LARSOptimizer, MLPerf) tests ||g|| = 0 and falls back to lambda = 1: -beta = -0.0005.
    # An all-zero tensor gets a zero update in both.
    params = {"w": np.ones((2, 2), np.float32), "zero": np.zeros((3, 3), np.float32)}
    grads = jax.tree.map(np.zeros_like, params)
    upd = run_tx(optim.lars(1.0, weight_decay=5e-4, trust_coefficient=0.001, denominator=denominator),
                 params, [grads])[0]
    np.testing.assert_allclose(upd["w"], np.full((2, 2), expected), rtol=1e-6)
    np.testing.assert_array_equal(upd["zero"], 0.0)
    if denominator == "optax":
        theirs = run_tx(optax.lars(1.0, weight_decay=5e-4, trust_coefficient=0.001), params, [grads])[0]
        np.testing.assert_allclose(upd["w"], theirs["w"], rtol=1e-6)
        np.testing.assert_array_equal(theirs["zero"], 0.0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_optax_denominator_equals_optax_lars_with_zero_gradients_and_zero_tensors(nesterov, rng):
    # Ten steps where one kernel's gradient is exactly 0 (w != 0) and another kernel is all zeros
    # (w = 0, g = 0 at first, then g != 0): the edges where the zero-norm rules decide.
    params = random_tree(rng)
    params["dense"]["kernel"] = np.zeros_like(params["dense"]["kernel"])
    grads_seq = []
    for t in range(10):
        grads = random_tree(rng)
        grads["conv"]["kernel"] = np.zeros_like(grads["conv"]["kernel"])
        if t < 3:
            grads["dense"]["kernel"] = np.zeros_like(grads["dense"]["kernel"])
        grads_seq.append(grads)
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    ours = optim.lars(0.5, momentum=0.9, weight_decay=5e-4, trust_coefficient=0.001, nesterov=nesterov,
                      denominator="optax")
    theirs = optax.lars(0.5, weight_decay=5e-4, weight_decay_mask=mask, trust_coefficient=0.001,
                        trust_ratio_mask=mask, momentum=0.9, nesterov=nesterov)
    w_ours, w_theirs = params, params
    for a, b, grads in zip(run_tx(ours, params, grads_seq), run_tx(theirs, params, grads_seq), grads_seq):
        assert max_rel_diff(b, a) < 1e-6
        w_ours, w_theirs = optax.apply_updates(w_ours, a), optax.apply_updates(w_theirs, b)
    np.testing.assert_allclose(np.linalg.norm(w_ours["conv"]["kernel"]),
                               np.linalg.norm(w_theirs["conv"]["kernel"]), rtol=1e-6)


@pytest.mark.parametrize("denominator,nesterov", [("paper", False), ("paper", True), ("optax", False)])
def test_lars_in_float64_matches_the_float64_reference_to_1e_12(denominator, nesterov, rng):
    # Under jax_enable_x64 the norms must not drop to float32 (that alone gives ~1e-7 errors).
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float64), t)  # noqa: E731
        params = to64(random_tree(rng))
        grads_seq = [to64(random_tree(rng, scale=10.0 ** rng.uniform(-3, 1))) for _ in range(6)]
        schedule = optax.linear_schedule(0.5, 2.0, 6)
        tx = optim.lars(schedule, momentum=0.9, weight_decay=5e-4, trust_coefficient=0.001,
                        nesterov=nesterov, denominator=denominator)
        got = run_tx(tx, params, grads_seq)
        assert all(x.dtype == np.float64 for x in jax.tree.leaves(got))
        ref = numpy_lars_updates(params, grads_seq, schedule, momentum=0.9, weight_decay=5e-4, eta=0.001,
                                 eps=0.0, nesterov=nesterov, excluded=NDIM_EXCLUDED, denominator=denominator)
        err = max_rel_error(got, ref)
    assert err < 1e-12, f"max relative error vs the float64 reference: {err:.2e}"


def test_norms_of_bfloat16_leaves_accumulate_in_float32():
    x = jnp.full((4096,), 0.01, jnp.bfloat16)  # a bf16 running sum of squares would stall near 0.26
    stats = optim.layer_stats({"w": x.reshape(64, 64)}, {"w": x.reshape(64, 64)})
    np.testing.assert_allclose(float(stats.w_norm["w"]), np.sqrt(4096) * float(x[0]), rtol=1e-3)


def test_default_exclusion_is_plain_momentum_sgd(rng):
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(3)]
    lr, m = 0.1, 0.9
    got = run_tx(optim.lars(lr, momentum=m, weight_decay=0.1), params, grads_seq)
    v = 0.0
    for t, grads in enumerate(grads_seq):
        v = m * v + lr * grads["bn"]["scale"].astype(np.float64)  # no trust ratio, no weight decay
        np.testing.assert_allclose(got[t]["bn"]["scale"], -v, rtol=1e-5, atol=1e-6 * np.abs(v).max())
    assert optim.exclude_ndim_le_1(params) == NDIM_EXCLUDED


@pytest.mark.parametrize("as_callable", [False, True])
def test_custom_exclusion(as_callable, rng):
    params, grads = random_tree(rng), random_tree(rng)
    excluded = {"conv": {"kernel": False, "bias": False}, "bn": {"scale": True, "bias": True},
                "dense": {"kernel": True}}
    exclude = (lambda p: excluded) if as_callable else excluded
    lr, beta, eta = 0.2, 1e-3, 0.001
    upd = run_tx(optim.lars(lr, weight_decay=beta, exclude=exclude), params, [grads])[0]
    np.testing.assert_allclose(upd["dense"]["kernel"], -lr * grads["dense"]["kernel"], rtol=1e-6)
    b, gb = params["conv"]["bias"].astype(np.float64), grads["conv"]["bias"].astype(np.float64)
    ratio = eta * np.linalg.norm(b) / (np.linalg.norm(gb) + beta * np.linalg.norm(b))
    np.testing.assert_allclose(upd["conv"]["bias"], -lr * ratio * (gb + beta * b), rtol=1e-5)


def test_lars_update_is_the_same_on_8_devices_replicated_and_sharded(rng):
    assert jax.device_count() == 8
    shapes = {"wide": {"kernel": (64, 128)}, "conv": {"kernel": (3, 3, 16, 32), "bias": (32,)}}
    make = lambda s: jax.tree.map(lambda x: rng.standard_normal(x).astype(np.float32), s,  # noqa: E731
                                  is_leaf=lambda x: isinstance(x, tuple))
    params, grads_seq = make(shapes), [make(shapes) for _ in range(3)]
    tx = optim.lars(optax.linear_schedule(1.0, 0.1, 3), weight_decay=1e-3, trust_coefficient=0.01)

    def train(params, sharding_of):
        state = tx.init(params)

        @jax.jit
        def step(params, state, grads):
            u, state = tx.update(grads, state, params)
            return optax.apply_updates(params, u), state
        put = lambda t: jax.tree.map(lambda x, s: jax.device_put(x, s), t, sharding_of(t))  # noqa: E731
        params, state = put(params), jax.tree.map(jnp.asarray, state)
        for grads in grads_seq:
            params, state = step(params, state, put(grads))
        return params

    single = train(params, lambda t: jax.tree.map(lambda _: jax.devices()[0], t))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = train(params, lambda t: jax.tree.map(lambda _: NamedSharding(mesh, P()), t))
    sharded = train(params, lambda t: {"wide": {"kernel": NamedSharding(mesh, P(None, "data"))},
                                       "conv": jax.tree.map(lambda _: NamedSharding(mesh, P()), t["conv"])})
    assert sharded["wide"]["kernel"].sharding.spec == P(None, "data")
    for other in (replicated, sharded):  # a sharded norm sums in a different order: float32 rounding
        chex.assert_trees_all_close(single, other, rtol=1e-6, atol=1e-7)


def test_lamb_matches_optax_lamb_without_exclusion_and_excludes_by_default(rng):
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(4)]
    nothing = lambda p: jax.tree.map(lambda _: False, p)  # noqa: E731
    ours = run_tx(optim.lamb(1e-2, weight_decay=1e-2, exclude=nothing), params, grads_seq)
    theirs = run_tx(optax.lamb(1e-2, weight_decay=1e-2), params, grads_seq)
    for a, b in zip(ours, theirs):
        chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-9)
    default = run_tx(optim.lamb(1e-2, weight_decay=1e-2), params, grads_seq[:1])[0]
    adam = run_tx(optax.adam(1e-2, eps=1e-6), params, grads_seq[:1])[0]
    np.testing.assert_allclose(default["bn"]["bias"], adam["bn"]["bias"], rtol=1e-6)
    assert not np.allclose(default["dense"]["kernel"], adam["dense"]["kernel"], rtol=1e-3)


@pytest.mark.parametrize("mode,nesterov", [("l2", False), ("l2", True), ("decoupled", False), ("decoupled", True)])
def test_sgd_baselines_match_reference(mode, nesterov, rng):
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(4)]
    lr_fn, m, beta = optax.linear_schedule(0.2, 0.05, 4), 0.9, 1e-2
    got = run_tx(optim.sgd(lr_fn, momentum=m, nesterov=nesterov, weight_decay=beta, weight_decay_mode=mode),
                 params, grads_seq)
    w = {k: np.asarray(v, np.float64) for k, v in params["dense"].items()}["kernel"]
    b = np.asarray(params["bn"]["bias"], np.float64)
    vw, vb = 0.0, 0.0
    for t, grads in enumerate(grads_seq):
        lr, g, gb = float(lr_fn(t)), grads["dense"]["kernel"], grads["bn"]["bias"]
        if mode == "l2":
            d = g + beta * w
            vw, vb = m * vw + lr * d, m * vb + lr * gb
            uw = -(m * vw + lr * d) if nesterov else -vw
            ub = -(m * vb + lr * gb) if nesterov else -vb
        else:
            vw, vb = m * vw + g, m * vb + gb
            uw = -lr * ((m * vw + g if nesterov else vw) + beta * w)
            ub = -lr * (m * vb + gb if nesterov else vb)  # excluded: no weight decay
        assert max_rel_error([got[t]["dense"]["kernel"], got[t]["bn"]["bias"]], [uw, ub]) < 1e-5
        w, b = w + uw, b + ub


def test_layer_stats_match_numpy(rng):
    params, grads = random_tree(rng), random_tree(rng, scale=0.01)
    stats = jax.jit(lambda p, g: optim.layer_stats(p, g, weight_decay=1e-3, trust_coefficient=0.002))(params, grads)
    w, g = params["dense"]["kernel"].astype(np.float64), grads["dense"]["kernel"].astype(np.float64)
    np.testing.assert_allclose(stats.w_norm["dense"]["kernel"], np.linalg.norm(w), rtol=1e-6)
    np.testing.assert_allclose(stats.g_norm["dense"]["kernel"], np.linalg.norm(g), rtol=1e-6)
    ratio = 0.002 * np.linalg.norm(w) / (np.linalg.norm(g) + 1e-3 * np.linalg.norm(w))
    np.testing.assert_allclose(stats.trust_ratio["dense"]["kernel"], ratio, rtol=1e-5)
    assert float(stats.trust_ratio["bn"]["scale"]) == 1.0
    flat = optim.flatten_layer_stats(stats)
    assert set(flat) >= {"trust_ratio/dense/kernel", "w_norm/conv/bias", "g_norm/bn/scale"}
    assert len(flat) == 3 * len(jax.tree.leaves(params))


@pytest.mark.parametrize("kwargs,field", [
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": -0.1}, "momentum"),
    ({"denominator": "clip"}, "denominator"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"trust_coefficient": 0.0}, "trust_coefficient"),
])
def test_lars_rejects_bad_arguments(kwargs, field):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=field):
        optim.lars(kwargs.pop("learning_rate"), **kwargs)


@pytest.mark.parametrize("factory,kwargs", [
    (optim.lars, dict(momentum=0.9, weight_decay=1e-3, trust_coefficient=0.01)),
    (optim.lars, dict(momentum=0.9, weight_decay=1e-3, nesterov=True, denominator="optax")),
    (optim.lamb, dict(weight_decay=1e-3)),
    (optim.sgd, dict(momentum=0.9, weight_decay=1e-3, nesterov=True)),
])
def test_factories_work_under_inject_hyperparams(factory, kwargs, rng):
    # optax.inject_hyperparams calls the factory again inside every (jitted) update with the
    # hyperparameters as arrays; setting the learning rate in the state each step must give the
    # updates of the same factory driven by a schedule of those values.
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(3)]
    rates = [0.1, 0.25, 0.05]
    tx = optax.inject_hyperparams(factory)(learning_rate=rates[0], **kwargs)
    state, step, w = tx.init(params), jax.jit(tx.update), params
    got = []
    for rate, grads in zip(rates, grads_seq):
        state.hyperparams["learning_rate"] = jnp.asarray(rate, jnp.float32)
        updates, state = step(grads, state, w)
        got.append(updates)
        w = optax.apply_updates(w, updates)
    expected = run_tx(factory(lambda count: jnp.asarray(rates)[count], **kwargs), params, grads_seq)
    # Relative to each tensor's largest entry. Injected b1/b2 are float32 arrays, so LAMB's bias
    # correction 1 - b2^t rounds differently from the Python-float one (~7e-6); LARS and SGD ~1e-7.
    for a, b in zip(got, expected):
        assert max_rel_diff(b, a) < (3e-5 if factory is optim.lamb else 1e-6)
