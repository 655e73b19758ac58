"""lars_jax.noise_scale against brute force: exact |G|^2 and tr(Sigma) from per-example (or
per-BN-group) gradients in float64, and the estimator simulated as a data-parallel step uses it."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P

from lars_jax import noise_scale as ns
from lars_jax.models import create_model

N, DIM, CLASSES, DEVICES, STEPS = 2048, 16, 10, 8, 200


class TinyMLP(nn.Module):
    """No BatchNorm, so one example's gradient is well defined."""
    @nn.compact
    def __call__(self, x):
        return nn.Dense(CLASSES)(jnp.tanh(nn.Dense(32)(x)))


def _teacher_data(rng):
    """x [N, DIM] float64, labels [N] from a random tanh teacher plus label noise."""
    x = rng.normal(size=(N, DIM))
    w = rng.normal(size=(DIM, CLASSES))
    return x, np.argmax(np.tanh(x @ w) + 0.5 * rng.normal(size=(N, CLASSES)), -1)


def _exact(unit_grads):
    """(|G|^2, tr Sigma) over the n units, Sigma the population covariance (1/n)."""
    g = np.asarray(unit_grads)
    mean = g.mean(0)
    return mean @ mean, np.mean(np.sum((g - mean) ** 2, 1)), len(g)


def _expected(grad_sq, trace, n, replace):
    # Drawn without replacement, E|G_B|^2 = |G|^2 + tr(Sigma) (n - B) / ((n - 1) B): still of the
    # form A + C / B, so the estimator returns A and C exactly.
    return (grad_sq, trace) if replace else (grad_sq - trace / (n - 1), trace * n / (n - 1))


def _batches(rng, n, b, replace):
    """[STEPS, DEVICES, b] unit indices: each step's global batch split over the devices."""
    return np.stack([rng.choice(n, DEVICES * b, replace=replace) for _ in range(STEPS)]
                    ).reshape(STEPS, DEVICES, b)


def _simulate(device_grad, xs, ys, b):
    """Per step: every device's gradient, then `estimate` from the pmean of their squared norms
    and the squared norm of their mean, as the train step would -> [STEPS, 2]."""
    def step(x, y):
        grads = jax.vmap(device_grad)(x, y)
        small = jnp.mean(jax.vmap(ns.sq_norm)(grads))
        big = ns.sq_norm(jax.tree.map(lambda g: g.mean(0), grads))
        return jnp.stack(ns.estimate(small, big, b, DEVICES * b))
    return np.asarray(jax.jit(jax.vmap(step))(xs, ys))


def _assert_unbiased(samples, expected, label):
    """Within 4 Monte Carlo standard errors and 5% of the exact expectation; returns the
    standard errors."""
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    for name, m, s, e in zip(("|G|^2", "tr(Sigma)"), mean, se, expected):
        print(f"{label} {name}: expected {e:.6g}, mean {m:.6g}, rel err {(m - e) / e:+.4f}, "
              f"rel se {s / abs(e):.4f}")
        assert abs(m - e) <= 4 * s, (name, m, e, s)
        assert abs(m - e) <= 0.05 * abs(e), (name, m, e)
    return se


def _softmax_ce(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.parametrize("replace", [False, True], ids=["without_replacement", "with_replacement"])
def test_estimate_unbiased_brute_force(rng, seed, replace):
    b = 32  # B_big = 256, about 2 B_simple here: |G|^2 resolved to ~1% in 200 steps
    with jax.enable_x64(True):
        x, y = _teacher_data(rng)
        model = TinyMLP()
        params = jax.tree.map(lambda p: p.astype(jnp.float64),
                              model.init(jax.random.key(seed), x[:1]))
        loss = lambda p, xb, yb: _softmax_ce(model.apply(p, xb), yb)  # noqa: E731
        per_example = jax.vmap(lambda xi, yi: ravel_pytree(jax.grad(loss)(params, xi[None], yi[None]))[0])
        grad_sq, trace, n = _exact(per_example(x, y))
        expected = _expected(grad_sq, trace, n, replace)
        idx = _batches(rng, n, b, replace)
        samples = _simulate(lambda xb, yb: jax.grad(loss)(params, xb, yb), x[idx], y[idx], b)
        se = _assert_unbiased(samples, expected, f"replace={replace}")
        if not replace:
            # The finite-population term is resolved: comparing with |G|^2 itself would fail.
            assert abs(samples[:, 0].mean() - grad_sq) > 4 * se[0]


def test_estimate_unbiased_batchnorm_groups(rng, seed):
    """With BN the unit is one group of g examples: per-group gradients give the exact values,
    and devices holding b whole groups give unbiased estimates with b_small = b groups."""
    g, b = 8, 8  # 256 fixed groups; each device normalises its 8 groups of 8 apart
    with jax.enable_x64(True):
        x, y = _teacher_data(rng)
        model = create_model("mlp", num_classes=CLASSES, dtype=jnp.float64, bn_group_size=g,
                             hidden=(32,))
        variables = model.init(jax.random.key(seed), x[:g], train=True)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), variables["params"])
        stats = variables["batch_stats"]

        def loss(p, xb, yb):
            logits, _ = model.apply({"params": p, "batch_stats": stats}, xb, train=True,
                                    mutable=["batch_stats"])
            return _softmax_ce(logits, yb)

        xg, yg = x.reshape(N // g, g, DIM), y.reshape(N // g, g)
        per_group = jax.vmap(lambda xi, yi: ravel_pytree(jax.grad(loss)(params, xi, yi))[0])
        grad_sq, trace, n = _exact(per_group(xg, yg))
        idx = _batches(rng, n, b, replace=False)
        flat = lambda a: a.reshape(STEPS, DEVICES, b * g, *a.shape[4:])  # noqa: E731
        samples = _simulate(lambda xb, yb: jax.grad(loss)(params, xb, yb), flat(xg[idx]),
                            flat(yg[idx]), b)
        _assert_unbiased(samples, _expected(grad_sq, trace, n, replace=False), "BN groups")


def test_estimate_formulas_and_units():
    small, big, b_s, b_b = 3.0, 1.2, 4, 32
    grad_sq, trace = ns.estimate(small, big, b_s, b_b)
    assert grad_sq.dtype == trace.dtype == jnp.float32
    # E|G_B|^2 = |G|^2 + tr(Sigma) / B at both sizes, solved for the two unknowns
    np.testing.assert_allclose([grad_sq + trace / b_s, grad_sq + trace / b_b], [small, big], rtol=1e-6)
    # counting BN groups of 4 as 4 examples each: same |G|^2, tr(Sigma) and B_simple times 4
    grad_sq4, trace4 = ns.estimate(small, big, 4 * b_s, 4 * b_b)
    np.testing.assert_allclose([grad_sq4, trace4], [grad_sq, 4 * trace], rtol=1e-6)
    traced = jax.jit(ns.estimate)(jnp.float32(small), jnp.float32(big), b_s, b_b)
    np.testing.assert_allclose(traced, (grad_sq, trace), rtol=1e-6)
    assert ns.estimate(jnp.bfloat16(small), jnp.bfloat16(big), b_s, b_b)[0].dtype == jnp.float32
    with jax.enable_x64(True):
        assert ns.estimate(np.float64(small), np.float64(big), b_s, b_b)[1].dtype == jnp.float64
    for bad in ((8, 8), (16, 8), (0, 8)):
        with pytest.raises(ValueError, match="b_small"):
            ns.estimate(small, big, *bad)


def test_estimate_in_shard_map_matches_one_device(rng, seed):
    """On 8 devices: each device's squared norm pmean'd, the global one from the pmean of the
    gradients, `estimate` inside the jitted shard_map == the same from the 8 slices on one device."""
    b = 16
    x, y = _teacher_data(rng)
    x, y = jnp.asarray(x[:DEVICES * b], jnp.float32), jnp.asarray(y[:DEVICES * b])
    model = TinyMLP()
    params = model.init(jax.random.key(seed), x[:1])
    grad = jax.grad(lambda p, xb, yb: _softmax_ce(model.apply(p, xb), yb))
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:DEVICES]), ("data",))

    def device_step(p, xb, yb):
        local = grad(p, xb, yb)
        small = jax.lax.pmean(ns.sq_norm(local), "data")
        big = ns.sq_norm(jax.lax.pmean(local, "data"))
        return (small, big), ns.estimate(small, big, b, DEVICES * b)

    # check_vma=False: grad of the local loss is this device's own gradient of the replicated params
    sharded = jax.jit(jax.shard_map(device_step, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                    out_specs=P(), check_vma=False))
    (small, big), est = sharded(params, x, y)

    grads = [grad(params, xs, ys) for xs, ys in zip(x.reshape(DEVICES, b, DIM), y.reshape(DEVICES, b))]
    small1 = np.mean([ns.sq_norm(gr) for gr in grads])
    big1 = ns.sq_norm(jax.tree.map(lambda *gs: sum(gs) / DEVICES, *grads))
    np.testing.assert_allclose([small, big], [small1, big1], rtol=1e-5)
    assert small > 1.5 * big  # the devices' gradients differ: tr(Sigma) is measurable here
    # both estimates are combinations of small and big with coefficients ~1 (|G|^2) and
    # ~b (tr Sigma): rounding of order 1e-6 * small in the sums bounds their difference
    est1 = ns.estimate(small1, big1, b, DEVICES * b)
    np.testing.assert_allclose(est[0], est1[0], atol=1e-5 * small1)
    np.testing.assert_allclose(est[1], est1[1], atol=1e-5 * b * small1)


def _ema_reference(xs, decay):
    t = len(xs)
    weights = (1 - decay) * decay ** np.arange(t - 1, -1, -1)
    return weights @ np.asarray(xs) / (1 - decay ** t)


def test_ema_bias_correction(rng):
    decay = 0.9
    for c in (0.25, 8.0):  # powers of two: every rounding of the sums and the weight scales alike
        state = ns.ema_init()
        for _ in range(30):
            state = ns.ema_update(state, c, 2 * c, decay)
            assert tuple(map(float, ns.ema_values(state))) == (c, 2 * c)
    c, d = rng.uniform(0.1, 10, size=2)
    update = jax.jit(ns.ema_update)
    state = ns.ema_init()
    for t in range(1, 101):
        state = update(state, c, d, decay)
        assert int(state.count) == t
        np.testing.assert_allclose(ns.ema_values(state), (c, d), rtol=2e-6)
        np.testing.assert_allclose(ns.b_simple(state), d / c, rtol=2e-6)

    # varying inputs, in a jitted scan: the Adam-style corrected average
    xs = rng.normal(1.0, 0.5, size=(50, 2))
    def body(s, x):
        s = ns.ema_update(s, x[0], x[1], decay)
        return s, ns.ema_values(s)
    with jax.enable_x64(True):
        _, (gs, trs) = jax.jit(lambda: jax.lax.scan(body, ns.ema_init(jnp.float64), xs))()
        for t in (1, 2, 10, 50):
            np.testing.assert_allclose([gs[t - 1], trs[t - 1]], _ema_reference(xs[:t], decay),
                                       rtol=1e-12)


def test_b_simple_nan_when_undefined():
    assert np.isnan(ns.b_simple(ns.ema_init()))  # no update yet
    for grad_sq, trace in ((-1.0, 5.0), (0.0, 5.0), (1.0, -5.0), (np.nan, 1.0), (np.inf, 1.0)):
        state = ns.ema_update(ns.ema_init(), grad_sq, trace, 0.99)
        value = ns.b_simple(state)
        assert np.isnan(value) or value == 0.0, (grad_sq, trace, value)
        assert not np.isinf(value)
    # noise-dominated early steps pull the |G|^2 average below 0; it recovers once they fade
    state = ns.ema_update(ns.ema_init(), -4.0, 100.0, 0.5)
    assert np.isnan(ns.b_simple(state))
    for _ in range(5):
        state = ns.ema_update(state, 2.0, 100.0, 0.5)
    assert 0 < ns.b_simple(state) < np.inf
    assert float(ns.b_simple(ns.ema_update(ns.ema_init(), 2.0, 0.0, 0.9))) == 0.0


def test_host_b_simple_follows_the_device_rule():
    for grad_sq, trace in ((2.0, 5.0), (2.0, 0.0), (-1.0, 5.0), (0.0, 5.0), (1.0, -5.0), (np.nan, 1.0), (np.inf, 1.0)):
        device = float(ns.b_simple(ns.ema_update(ns.ema_init(), grad_sq, trace, 0.0)))
        host = ns.b_simple_of(grad_sq, trace)
        assert (np.isnan(device) and host is None) or device == pytest.approx(host), (grad_sq, trace, host, device)


def test_sq_norm_dtypes(rng):
    with jax.enable_x64(True):
        tree = {"a": rng.normal(size=(3, 5)), "b": [rng.normal(size=7), np.float64(2.5)]}
        tree = jax.tree.map(jnp.asarray, tree)
        value = ns.sq_norm(tree)
        assert value.dtype == jnp.float64
        reference = sum(np.sum(np.square(np.asarray(v))) for v in jax.tree.leaves(tree))
        np.testing.assert_allclose(value, reference, rtol=1e-12)
        mixed = {"w": jnp.ones(3, jnp.float32), "v": jnp.ones(2, jnp.float64)}
        assert ns.sq_norm(mixed).dtype == jnp.float64
    # 257 is not a bf16 number (256, 258 are): the sum must be kept in float32
    bf16 = {"w": jnp.ones((257,), jnp.bfloat16), "b": jnp.full((2,), 0.5, jnp.bfloat16)}
    value = jax.jit(ns.sq_norm)(bf16)
    assert value.dtype == jnp.float32 and float(value) == 257.5
    assert ns.sq_norm({"w": jnp.ones(2, jnp.float32)}).dtype == jnp.float32
    assert float(ns.sq_norm({})) == 0.0


def _frozen_step(mesh, microbatches, group):
    """lars_jax's real train step with the LR at 0 (params frozen), measuring the noise scale."""
    from lars_jax import parallel, steps
    model = create_model("mlp", num_classes=CLASSES, bn_group_size=group, hidden=(32,))
    tx = optax.sgd(0.0)
    step = steps.make_train_step(model, tx, num_classes=CLASSES, mesh=mesh, microbatches=microbatches,
                                 noise_scale_decay=0.9)
    sharding = parallel.batch_sharded(mesh)
    jitted = jax.jit(step)

    def run(state, x, y):
        batch = {"image": jax.device_put(jnp.asarray(x, jnp.float32).reshape(len(x), 4, 4, 1), sharding),
                 "label": jax.device_put(jnp.asarray(y, jnp.int32), sharding)}
        return jitted(state, batch)
    return model, tx, run


def test_train_step_estimates_match_brute_force(rng, seed):
    """The estimates the train step logs (8 devices, 8 BN groups of 8 each), averaged over 200
    steps of frozen params, against the exact per-group |G|^2 and tr(Sigma) in float64."""
    from lars_jax import parallel, steps
    g, b = 8, 8  # groups of 8 examples, 8 groups per device: b_small = 64, b_big = 512 examples
    x, y = _teacher_data(rng)
    mesh = parallel.make_mesh(jax.devices()[:DEVICES])
    model, tx, run = _frozen_step(mesh, 1, g)
    state = steps.init_state(model, tx, (4, 4, 1), seed)
    with jax.enable_x64(True):  # the reference: per-group gradients of the same params in float64
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), state.params)
        model64 = create_model("mlp", num_classes=CLASSES, bn_group_size=g, hidden=(32,), dtype=jnp.float64)

        def loss(p, xb, yb):
            logits, _ = model64.apply({"params": p, "batch_stats": state.batch_stats}, xb.reshape(-1, 4, 4, 1),
                                      train=True, mutable=["batch_stats"])
            return _softmax_ce(logits, yb)

        xg, yg = x.reshape(N // g, g, DIM), y.reshape(N // g, g)
        per_group = jax.vmap(lambda xi, yi: ravel_pytree(jax.grad(loss)(params64, xi, yi))[0])
        grad_sq, trace_groups, n = _exact(per_group(xg, yg))
    expected = _expected(grad_sq, trace_groups, n, replace=False)
    expected = (expected[0], expected[1] * g)  # counted in examples: tr(Sigma) per group x group size
    samples = []
    for idx in _batches(rng, n, b, replace=False):  # [DEVICES, b] group indices per step
        state, metrics = run(state, xg[idx].reshape(-1, DIM), yg[idx].reshape(-1))
        samples.append([float(metrics["noise_scale"]["grad_sq"]), float(metrics["noise_scale"]["trace_sigma"])])
    _assert_unbiased(np.asarray(samples), expected, "train step, BN groups")
    assert float(metrics["noise_scale"]["b_simple"]) > 0


def test_8_devices_and_1_device_with_8_microbatches_give_the_same_estimates(rng, seed):
    """The same batches, the same BN groups (one group per piece): devices or microbatches, the
    small batch is the same 64 examples, so the estimates agree to float32 rounding."""
    from lars_jax import parallel, steps
    x, y = _teacher_data(rng)
    results = []
    for mesh, k in ((parallel.make_mesh(jax.devices()[:DEVICES]), 1), (parallel.make_mesh(jax.devices()[:1]), 8)):
        model, tx, run = _frozen_step(mesh, k, group=64)
        state = steps.init_state(model, tx, (4, 4, 1), seed)
        order = np.random.default_rng(seed).permutation(N)
        got = []
        for t in range(4):
            idx = order[t * 512:(t + 1) * 512]
            state, metrics = run(state, x[idx], y[idx])
            got.append([float(v) for v in (metrics["noise_scale"]["grad_sq"], metrics["noise_scale"]["trace_sigma"],
                                           metrics["noise_scale"]["b_simple"])])
        results.append(np.asarray(got))
    np.testing.assert_allclose(results[0], results[1], rtol=2e-4)


@pytest.mark.parametrize("devices, microbatches", [(1, 4), (4, 1)])
def test_the_estimators_operations_carry_its_name_scope(devices, microbatches):
    """Profiles and benchmarks/noise_scale_overhead.py find the estimator's work by
    steps.NOISE_SCALE_SCOPE in the HLO metadata: the pieces' squared norms (inside the shard_map)
    and the estimate and EMA update (outside) carry it, and a step that does not measure has none."""
    import re

    from lars_jax import parallel, steps
    mesh = parallel.make_mesh(jax.devices()[:devices])
    model = create_model("mlp", num_classes=CLASSES, hidden=(32,))
    batch = {"image": jax.ShapeDtypeStruct((32, 4, 4, 1), jnp.float32),
             "label": jax.ShapeDtypeStruct((32,), jnp.int32)}
    state = jax.eval_shape(lambda: steps.init_state(model, optax.sgd(0.1), (4, 4, 1), 0))
    scoped = {}
    for decay in (None, 0.9):
        step = steps.make_train_step(model, optax.sgd(0.1), num_classes=CLASSES, mesh=mesh,
                                     microbatches=microbatches, noise_scale_decay=decay)
        hlo = jax.jit(step).lower(state, batch).as_text(debug_info=True)
        scoped[decay] = [op for op in re.findall(r'loc\("([^"]+)"', hlo)
                         if re.search(rf"(^|/){steps.NOISE_SCALE_SCOPE}/", op)]
    assert not scoped[None]
    scope = steps.NOISE_SCALE_SCOPE
    assert {f"{scope}/square", f"{scope}/reduce_sum"} <= set(scoped[0.9]), scoped[0.9]  # inside the shard_map
    assert {f"jit(train_step)/{scope}/div", f"jit(train_step)/{scope}/mul"} <= set(scoped[0.9]), scoped[0.9]


def test_tail_interval_covers_the_true_b_simple_95_percent_of_the_time():
    """The tail's interval (batch means over its blocks, jackknife, Student's t) checked by what it
    promises: over 1,000 seeded runs of noisy per-step estimates whose true B_simple is known, it
    holds the truth in ~95% of them; and a run resumed mid-tail gives the one-piece run's result."""
    from lars_jax import reporting

    rng = np.random.default_rng(0)
    true_grad_sq, true_trace = 2.0, 1000.0  # B_simple = 500
    covered, widths = 0, []
    for _ in range(1000):
        grad_sq = true_grad_sq + rng.normal(0, 1.5, 100)  # as noisy as a batch-256 estimate: often < 0
        trace = true_trace * (1 + rng.normal(0, 0.3, 100))
        steps = [(400 + i + 1, {"noise_scale": {"grad_sq": g, "trace_sigma": t}}) for i, (g, t) in
                 enumerate(zip(grad_sq, trace))]
        tail = reporting.NoiseScaleTail(500)  # its tail: steps 401-500
        tail.add(steps)
        low, high = tail.result()["b_simple_interval"]
        covered += low <= 500 <= (high if high is not None else np.inf)
        widths.append((high or np.inf) - low)
    assert 0.92 <= covered / 1000 <= 0.98, covered
    assert np.median(widths) < 500  # informative, not [0, inf)
    part = reporting.NoiseScaleTail(500)
    part.add(steps[:37])
    resumed = reporting.NoiseScaleTail(500, {"noise_scale_tail": part.progress()})
    resumed.add(steps[37:])
    assert resumed.result() == tail.result()


def test_ratio_interval_unbounded_or_undefined_when_the_data_cannot_bound_it():
    from lars_jax.reporting import ratio_interval

    assert ratio_interval([1.0, 2.0], [1.0, 1.0]) is None  # fewer than 3 blocks
    assert ratio_interval([1.0, 1.0, 1.0], [-1.0, 0.5, 0.4]) is None  # mean |G|^2 <= 0
    assert ratio_interval([1.0, 1.0, 1.0], [3.0, -2.0, 0.5]) == [0.0, None]  # a replicate's |G|^2 <= 0
    low, high = ratio_interval([10.0, 10.0, 10.0], [1.0, 1.0, 1.0])
    assert low == high == 10.0
