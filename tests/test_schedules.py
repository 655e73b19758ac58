"""Schedules: exact values at step 0, end of warmup, middle and last step, from the formulas."""
import math

import pytest

from lars_jax import configs, schedules


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


def test_make_schedule_from_config_and_total_steps_override():
    c = configs.get_base_config()
    c.update(base_learning_rate=2.0, lr_scaling="none", warmup_epochs=2, num_epochs=10, decay="poly",
             poly_power=2.0, end_learning_rate=0.0)
    s, total = schedules.make_schedule(c, steps_per_epoch=50)
    assert total == 500
    assert float(s(100)) == pytest.approx(2.0)
    assert float(s(300)) == pytest.approx(2.0 * 0.25, rel=1e-6)
    c.total_steps = 120
    s, total = schedules.make_schedule(c, steps_per_epoch=50)
    assert total == 120 and float(s(110)) == pytest.approx(2.0 * (1 - 10 / 20) ** 2, rel=1e-6)


def test_warmup_longer_than_training_names_the_field():
    c = configs.get_base_config()
    c.update(warmup_epochs=5, num_epochs=3)
    with pytest.raises(ValueError, match="config.warmup_epochs"):
        schedules.make_schedule(c, steps_per_epoch=10)
