"""Schedules: exact values at step 0, end of warmup, middle and last step, from the formulas."""
import math

import jax
import numpy as np
import pytest

from lars_jax import schedules


def test_warmup_poly_exact_values():
    peak, warmup, total, end = 3.2, 10, 110, 1e-4
    s = schedules.warmup_poly(peak, warmup, total, power=2.0, end=end)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(peak * 5 / 10, rel=1e-6)
    assert float(s(warmup)) == pytest.approx(peak, rel=1e-6)
    mid = warmup + 50  # half-way through the decay: (1 - 1/2)^2 = 1/4
    assert float(s(mid)) == pytest.approx(end + (peak - end) * 0.25, rel=1e-6)
    assert float(s(total - 1)) == pytest.approx(end + (peak - end) * (1 / 100) ** 2, rel=1e-5)
    assert float(s(total)) == pytest.approx(end, rel=1e-6)


def test_warmup_poly_extra_decay_steps_lengthens_the_decay():
    # The MLPerf reference decays over total - warmup + 1 steps: its last step keeps (2/(T'+1))^2.
    peak, warmup, total, end = 3.2, 10, 110, 1e-4
    s = schedules.warmup_poly(peak, warmup, total, power=2.0, end=end, extra_decay_steps=1)
    assert float(s(warmup)) == pytest.approx(peak, rel=1e-6)
    assert float(s(warmup + 50)) == pytest.approx(end + (peak - end) * (1 - 50 / 101) ** 2, rel=1e-6)
    assert float(s(total - 1)) == pytest.approx(end + (peak - end) * (2 / 101) ** 2, rel=1e-5)
    assert float(s(total + 1)) == pytest.approx(end, rel=1e-6)


@pytest.mark.parametrize("build,step,want", [
    (lambda: schedules.warmup_poly(31.2, 25, 64, end=1e-4), 1, 31.2 / 25),
    (lambda: schedules.warmup_poly(31.2, 25, 64, end=1e-4), 40, 1e-4 + (31.2 - 1e-4) * (1 - 15 / 39) ** 2),
    (lambda: schedules.warmup_cosine(31.2, 25, 64), 1, 31.2 / 25),
    (lambda: schedules.warmup_step(31.2, 25, (40,)), 1, 31.2 / 25),
    (lambda: schedules.warmup_constant(31.2, 25), 1, 31.2 / 25),
], ids=["poly-warmup", "poly-decay", "cosine", "step", "constant"])
def test_schedules_stay_float64_at_optax_int32_counts_under_x64(build, step, want):
    # optax's count is int32, and JAX divides an int32 in float32 even under x64.
    with jax.enable_x64(True):
        got = jax.jit(build())(np.int32(step))
        assert got.dtype == np.float64
        assert float(got) == pytest.approx(want, rel=1e-13, abs=0.0)


def test_warmup_cosine_exact_values():
    s = schedules.warmup_cosine(2.0, 4, 24, end=0.0)
    assert float(s(0)) == 0.0
    assert float(s(4)) == pytest.approx(2.0, rel=1e-6)
    assert float(s(14)) == pytest.approx(1.0, rel=1e-6)  # cos(pi/2): half the peak
    assert float(s(24)) == pytest.approx(0.0, abs=1e-7)


def test_warmup_step_goyal():
    steps_per_epoch = 100
    s = schedules.warmup_step(3.2, 5 * steps_per_epoch, (3000, 6000, 8000), factor=0.1)
    assert float(s(0)) == 0.0
    assert float(s(500)) == pytest.approx(3.2, rel=1e-6)
    assert float(s(2999)) == pytest.approx(3.2, rel=1e-6)
    assert float(s(3000)) == pytest.approx(0.32, rel=1e-6)
    assert float(s(7000)) == pytest.approx(0.032, rel=1e-5)
    assert float(s(8999)) == pytest.approx(0.0032, rel=1e-5)


@pytest.mark.parametrize("rule,expected", [("linear", 0.1 * 32), ("sqrt", 0.1 * math.sqrt(32)), ("none", 0.1)])
def test_scaling_rules(rule, expected):
    assert schedules.scaled_learning_rate(0.1, 8192, base_batch_size=256, rule=rule) == pytest.approx(expected)


@pytest.mark.parametrize("build,field", [
    (lambda: schedules.warmup_poly(1.0, 10, 100, power=0.0), "power"),
    (lambda: schedules.warmup_poly(-1.0, 10, 100), "peak"),
    (lambda: schedules.warmup_poly(1.0, 10, 100, extra_decay_steps=-1), "extra_decay_steps"),
    (lambda: schedules.warmup_step(1.0, 0, (50,), factor=1.5), "factor"),
    (lambda: schedules.scaled_learning_rate(0.1, 512, rule="cube"), "rule"),
])
def test_schedules_reject_bad_arguments_naming_them(build, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        build()
