"""lars_jax.batching: the run's batch plan against a walk of the data pipeline and hand arithmetic,
and train.batch_plan's reading of the config (scaling rules, fields named in errors)."""
import math

import numpy as np
import pytest

from helpers import small_config
from lars_jax import batching, train
from lars_jax.data import indexing
from lars_jax.errors import ConfigError


def random_case(rng) -> dict:
    processes = int(rng.choice([1, 2, 4]))
    workers = processes * int(rng.choice([1, 2, 4]))  # every host feeds the same number of devices
    microbatches = int(rng.choice([1, 2, 4]))
    batch = workers * microbatches * int(rng.integers(1, 6))
    num_epochs = float(rng.uniform(0.3, 4.0))
    return dict(num_train=int(rng.integers(batch, 5 * batch + 1)), global_batch=batch, workers=workers,
                processes=processes, microbatches=microbatches, num_epochs=num_epochs,
                total_steps=None if rng.random() < 0.5 else int(rng.integers(1, 40)),
                warmup_epochs=float(rng.uniform(0, 0.3)), peak_learning_rate=float(rng.uniform(0.1, 10)),
                stop_after_steps=None if rng.random() < 0.5 else int(rng.integers(1, 50)))


@pytest.mark.parametrize("case", range(48))
def test_plan_matches_a_walk_of_the_data_pipeline(case):
    c = random_case(np.random.default_rng([2026, case]))
    plan = batching.make_plan(**c)
    b, n, seed = c["global_batch"], c["num_train"], 11
    # Whole batches in the split, counted one at a time; epochs to steps by rounding to nearest.
    whole = 0
    while (whole + 1) * b <= n:
        whole += 1
    total = c["total_steps"] or max(1, math.floor(c["num_epochs"] * whole + 0.5))
    assert (plan.steps_per_epoch, plan.total_steps) == (whole, total)
    assert plan.warmup_steps == math.floor(c["warmup_epochs"] * whole + 0.5)
    assert plan.stop_step == min(total, c["stop_after_steps"] or total)
    assert plan.peak_learning_rate == c["peak_learning_rate"] and plan.epochs(whole) == 1.0
    # Every process's rows, in process order, make the global batch; an epoch is exactly
    # steps_per_epoch of them, distinct, before the next epoch's permutation starts.
    assert plan.per_process_batch * c["processes"] == b
    assert plan.per_device_batch * c["workers"] == b
    assert plan.microbatch_size * c["microbatches"] == plan.per_device_batch

    def rows(step):
        return np.concatenate([indexing.train_indices(seed, step, n, local_batch_size=plan.per_process_batch,
                                                      process_index=p, process_count=c["processes"])
                               for p in range(c["processes"])])
    epoch = np.concatenate([rows(k) for k in range(whole)])
    np.testing.assert_array_equal(epoch, indexing.epoch_permutation(seed, 0, n)[:whole * b])
    np.testing.assert_array_equal(rows(whole), indexing.epoch_permutation(seed, 1, n)[:b])
    assert len(set(epoch.tolist())) == whole * b and n - whole * b < b  # what an epoch drops is < one batch


def test_as_dict_holds_the_fields_and_the_derived_batches():
    plan = batching.make_plan(num_train=1000, global_batch=64, workers=8, processes=2, microbatches=2,
                              num_epochs=2, warmup_epochs=0.5, peak_learning_rate=3.0)
    assert plan.as_dict() == {
        "global_batch": 64, "processes": 2, "workers": 8, "microbatches": 2, "steps_per_epoch": 15,
        "total_steps": 30, "warmup_steps": 8, "stop_step": 30, "peak_learning_rate": 3.0,
        "per_process_batch": 32, "per_device_batch": 8, "microbatch_size": 4}


@pytest.mark.parametrize("kwargs,message", [
    (dict(global_batch=90, processes=4, workers=4), "global_batch: 90 does not divide over 4 processes"),
    (dict(global_batch=72, workers=8, microbatches=2),
     "global_batch: 72 does not divide over 8 devices x 2 microbatches"),
    (dict(global_batch=64, warmup_epochs=3.0),
     "warmup_epochs: 3.0 epochs = 45 steps is longer than training (30 steps)"),
    (dict(global_batch=2000), "global batch 2000 exceeds the 1000 train examples"),
])
def test_a_batch_that_does_not_split_is_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        batching.make_plan(**{"num_train": 1000, "num_epochs": 2, "peak_learning_rate": 1.0, **kwargs})


@pytest.mark.parametrize("rule,factor", [("linear", 2048 / 256), ("sqrt", math.sqrt(2048 / 256)), ("none", 1.0)])
def test_batch_plan_applies_the_configs_scaling_rule_once(rule, factor):
    config = small_config(global_batch_size=2048, schedule__lr_scaling=rule, schedule__base_learning_rate=0.1,
                          schedule__base_batch_size=256, schedule__total_steps=None, schedule__num_epochs=3,
                          schedule__warmup_epochs=1.0, loop__stop_after_steps=5, mesh__microbatches=4)
    plan = train.batch_plan(config, 60000, workers=8, processes=2)
    assert plan.peak_learning_rate == pytest.approx(0.1 * factor, rel=1e-15)
    assert (plan.steps_per_epoch, plan.total_steps, plan.warmup_steps, plan.stop_step) == (29, 87, 29, 5)
    assert (plan.per_process_batch, plan.per_device_batch, plan.microbatch_size) == (1024, 256, 64)
    schedule = train.build_schedule(config, plan)  # the schedule peaks where the plan says, at its LR
    assert float(schedule(plan.warmup_steps)) == pytest.approx(plan.peak_learning_rate, rel=1e-6)


@pytest.mark.parametrize("override,message", [
    (dict(global_batch_size=70000), "config.global_batch_size: 70000 exceeds the 60000 training examples"),
    (dict(schedule__warmup_epochs=5.0), "config.schedule.warmup_epochs: 5.0 epochs = 4685 steps is longer than "
                                        "training (10 steps)"),
    (dict(schedule__lr_scaling="cube"), "config.schedule.lr_scaling: got 'cube'"),
])
def test_batch_plan_errors_name_the_config_field(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train.batch_plan(small_config(**override), 60000, workers=8)
