"""lars_jax.train's builders: each config part becomes the library object it describes, and a bad
value comes back as a ConfigError naming the field's path."""
import chex
import pytest

from lars_jax import configs, data, models, optim, train
from lars_jax.errors import ConfigError
from helpers import steps_plan
from test_optim import random_tree, run_tx


def base(**parts):
    return configs.merge(configs.get_base_config(), parts)


@pytest.mark.parametrize("name,sgd_nesterov", [("lars", False), ("lamb", False), ("sgd", False), ("sgd", True)])
def test_each_optimizer_is_its_factory_called_with_its_part(name, sgd_nesterov, rng):
    config = base(global_batch_size=1024, optimizer=dict(name=name, lars=dict(momentum=0.8, weight_decay=1e-3,
                                                                              trust_coefficient=0.01),
                                                         lamb=dict(weight_decay=1e-3),
                                                         sgd=dict(momentum=0.8, weight_decay=1e-3, nesterov=sgd_nesterov)),
                  schedule=dict(base_learning_rate=0.4, base_batch_size=256, lr_scaling="linear", warmup_epochs=1,
                                num_epochs=4, decay="poly"))
    schedule = train.build_schedule(config, steps_plan(config, 10))
    assert float(schedule(10)) == pytest.approx(1.6)  # 0.4 * 1024 / 256 at the end of warmup
    tx = train.build_optimizer(config, schedule)
    expected = {
        "lars": optim.lars(schedule, momentum=0.8, weight_decay=1e-3, trust_coefficient=0.01),
        "lamb": optim.lamb(schedule, weight_decay=1e-3),
        "sgd": optim.sgd(schedule, momentum=0.8, weight_decay=1e-3, nesterov=sgd_nesterov),
    }[name]
    params = random_tree(rng)
    grads_seq = [random_tree(rng) for _ in range(12)]
    for a, b in zip(run_tx(tx, params, grads_seq), run_tx(expected, params, grads_seq)):
        chex.assert_trees_all_equal(a, b)


def test_schedule_length_from_epochs_or_total_steps():
    config = base(schedule=dict(base_learning_rate=2.0, warmup_epochs=2, num_epochs=10, decay="poly", poly_power=2.0))
    s = train.build_schedule(config, steps_plan(config, 50))
    assert steps_plan(config, 50).total_steps == 500
    assert float(s(100)) == pytest.approx(2.0)
    assert float(s(300)) == pytest.approx(2.0 * 0.25, rel=1e-6)
    config.schedule.total_steps = 120
    s = train.build_schedule(config, steps_plan(config, 50))
    assert steps_plan(config, 50).total_steps == 120 and float(s(110)) == pytest.approx(2.0 * (1 - 10 / 20) ** 2, rel=1e-6)


@pytest.mark.parametrize("parts,message", [
    (dict(optimizer=dict(name="adam")), "config.optimizer.name: got 'adam'; allowed values: 'lars'"),
    (dict(optimizer=dict(lars=dict(denominator="clip"))), "config.optimizer.lars.denominator: got 'clip'"),
    (dict(optimizer=dict(lars=dict(momentum=1.5))), "config.optimizer.lars.momentum: must lie in [0, 1)"),
    (dict(optimizer=dict(name="sgd", sgd=dict(weight_decay_mode="l3"))), "config.optimizer.sgd.weight_decay_mode"),
    (dict(optimizer=dict(name="lamb", lamb=dict(b2=1.0))), "config.optimizer.lamb.b2: must lie in [0, 1)"),
    (dict(optimizer=dict(lars=dict(beta=0.1))), "config.optimizer.lars.beta: not an argument of lars"),
    (dict(schedule=dict(base_learning_rate=-1.0)), "config.schedule.base_learning_rate: must be >= 0"),
    (dict(schedule=dict(decay="exp")), "config.schedule.decay: got 'exp'"),
    (dict(schedule=dict(lr_scaling="cube")), "config.schedule.lr_scaling: got 'cube'"),
    (dict(schedule=dict(poly_power=0.0)), "config.schedule.poly_power: must be > 0"),
    (dict(schedule=dict(decay="step", step_decay_factor=2.0)), "config.schedule.step_decay_factor: must lie in (0, 1]"),
    (dict(schedule=dict(warmup_epochs=50.0, num_epochs=10)), "longer than training"),
])
def test_a_bad_value_names_its_field(parts, message):
    config = base(**parts)
    with pytest.raises(ConfigError) as info:
        train.build_optimizer(config, train.build_schedule(config, steps_plan(config, 100)))
    assert message in str(info.value)


def test_model_options_pass_through_and_unknown_ones_name_the_field():
    info = data.DatasetInfo("synthetic", 1000, 10, (32, 32, 3), 10)
    config = base(global_batch_size=64, model=dict(name="resnet20", zero_init_last_bn=True, bn_group_size=4))
    model = train.build_model(config, info, workers=8)
    assert model.zero_init_last_bn and model.bn_group_size == 4 and model.num_classes == 10
    config.model.bn_group_size = None  # the per-device microbatch: 64 / 8 devices / 2 pieces
    config.mesh.microbatches = 2
    assert train.build_model(config, info, workers=8).bn_group_size == 4
    config.model.variant = "v1"  # ImageNet ResNets only
    with pytest.raises(ConfigError, match=r"config\.model\.variant: not an option of model 'resnet20'"):
        train.build_model(config, info, workers=8)
    assert "variant" in models.options("resnet50") and "variant" not in models.options("resnet20")
