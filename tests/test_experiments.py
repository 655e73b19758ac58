"""Every experiments/*.py loads, validates, and builds its train step on abstract shapes.

Nothing is initialised or run: `jax.eval_shape` traces the jitted step on the 8 fake CPU devices
(conftest.py), so an experiment file whose fields, model, optimizer or batch split stop working
fails here. ImageNet is absent on test machines, so the DatasetInfo comes from the known sizes.
"""
import glob
import math
import os

import chex
import jax
import jax.numpy as jnp
import pytest

from helpers import steps_plan
from lars_jax import configs, data, parallel, schedules, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))
NAMES = [os.path.splitext(os.path.basename(f))[0] for f in FILES]

# Known split sizes, so no dataset has to be present (ImageNet never is on CI).
SIZES = {  # dataset -> (num_train, num_eval, default image size, channels, classes)
    "imagenet2012": (1281167, 50000, 224, 3, 1000),
    "synthetic": (1281167, 1024, 224, 3, 1000),
    "cifar10": (50000, 10000, 32, 3, 10),
    "fashion_mnist": (60000, 10000, 28, 1, 10),
}


load = configs.load_config  # what ml_collections' config_flags does with --config=path


def batch_in_name(stem):
    """512 in alexnet_bn_512, 8 * 1024 in resnet50_8k_noaug; None where the name gives none."""
    for token in stem.split("_"):
        if token.isdigit():
            return int(token)
        if token.endswith("k") and token[:-1].isdigit():
            return int(token[:-1]) * 1024
    return None


def info_for(config):
    n_train, n_eval, size, ch, classes = SIZES[config.data.name]
    size = config.data.image_size or size
    return data.DatasetInfo(name=config.data.name, num_train=n_train, num_eval=n_eval,
                            image_shape=(size, size, ch), num_classes=classes)


def test_the_grid_is_complete():
    """The issue's grid: one file per row of the paper's tables, plus the two reference recipes."""
    expected = {"alexnet_512", "goyal_resnet50_8k", "mlperf_resnet50_32k"}
    expected |= {f"alexnet_bn_{b}" for b in ("512", "1k", "2k", "4k", "8k", "16k", "32k")}
    expected |= {f"resnet50_{b}{s}" for b in ("256", "8k", "16k", "32k") for s in ("", "_noaug")}
    assert expected <= set(NAMES), sorted(expected - set(NAMES))


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_config_loads_validates_and_matches_its_name(path):
    config = load(path)
    configs.validate(config, num_devices=8)
    stem = os.path.splitext(os.path.basename(path))[0]
    assert config.name == stem or stem == "fashion_mnist"
    # The batch in the name is the batch in the config (512, 1k = 1024, ...).
    if batch_in_name(stem) is not None:
        assert config.global_batch_size == batch_in_name(stem)
    # Warmup fits in training, and the schedule builds for the dataset's epoch length.
    info = info_for(config)
    spe = max(1, info.num_train // config.global_batch_size)
    plan = steps_plan(config, spe)
    schedule, total = train.build_schedule(config, plan), plan.total_steps
    assert total == round(config.schedule.num_epochs * spe)
    assert math.isfinite(float(schedule(total // 2)))
    train.build_optimizer(config, schedule)  # every optimizer argument in range


LARS_ROWS = [(f, n) for f, n in zip(FILES, NAMES) if n.startswith(("alexnet_bn_", "resnet50_"))]


@pytest.mark.parametrize("path", [f for f, _ in LARS_ROWS], ids=[n for _, n in LARS_ROWS])
def test_lars_rows_use_the_papers_confirmed_values(path):
    config = load(path)
    lars, sc = config.optimizer.lars, config.schedule
    assert config.optimizer.name == "lars" and lars.denominator == "paper"
    # You et al. give these for every LARS row: eta 0.001, momentum 0.9, poly(2) decay.
    assert (lars.trust_coefficient, lars.momentum, sc.poly_power, sc.decay) == (0.001, 0.9, 2.0, "poly")
    assert config.data.name == "imagenet2012" and config.model.dtype == "float32"
    if config.model.name == "alexnet_bn":
        assert sc.num_epochs == 100 and config.data.image_size == 227
    else:
        assert config.model.name == "resnet50" and sc.num_epochs == 90
        assert config.data.augment == (not config.name.endswith("_noaug"))
    warmups = {"alexnet_bn_4k": 13.0, "alexnet_bn_8k": 8.0}  # You et al.
    if config.name in warmups:
        assert sc.warmup_epochs == warmups[config.name]


def test_baselines_use_the_papers_confirmed_values():
    alexnet = load(os.path.join(ROOT, "experiments", "alexnet_512.py"))
    sc = alexnet.schedule
    assert (alexnet.model.name, alexnet.global_batch_size, sc.base_learning_rate, sc.num_epochs,
            sc.decay, sc.poly_power) == ("alexnet", 512, 0.01, 100, "poly", 2.0)
    goyal = load(os.path.join(ROOT, "experiments", "goyal_resnet50_8k.py"))
    sc = goyal.schedule
    peak = schedules.scaled_learning_rate(sc.base_learning_rate, goyal.global_batch_size,
                                          base_batch_size=sc.base_batch_size, rule=sc.lr_scaling)
    assert peak == pytest.approx(0.1 * 8192 / 256)  # Goyal et al.: LR = 0.1 * batch / 256
    assert (goyal.optimizer.name, sc.warmup_epochs, sc.decay, sc.num_epochs) == ("sgd", 5.0, "step", 90)


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_train_step_builds_on_abstract_shapes(path):
    """Trainer + jax.eval_shape(train_step) on 8 fake devices: traced, never compiled or run."""
    config = load(path)
    mesh = parallel.make_mesh(jax.devices()[:8])
    info = info_for(config)
    trainer = train.Trainer(config, mesh=mesh, info=info)
    state = jax.eval_shape(trainer.init_state)
    batch = trainer.abstract_batch()
    assert batch["image"].shape == (config.global_batch_size, *info.image_shape)
    new_state, metrics = jax.eval_shape(trainer.train_step, state, batch)
    # The step maps the state onto itself: same tree, shapes and dtypes.
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    for name in ("loss", "accuracy", "grad_norm", "learning_rate"):
        assert metrics[name].shape == () and jnp.issubdtype(metrics[name].dtype, jnp.floating), name
    # A classifier kernel with one output per class.
    assert any(x.ndim == 2 and x.shape[-1] == info.num_classes for x in jax.tree.leaves(state.params))


TABLES = sorted(glob.glob(os.path.join(ROOT, "experiments", "tables", "*.py")))


@pytest.mark.parametrize("path", TABLES, ids=[os.path.basename(t) for t in TABLES])
def test_every_table_row_runs_as_its_own_file(path):
    """A paper table (experiments/tables/) returns its rows by name; experiments/<row>.py gives each."""
    rows = load(path)
    assert len(rows) > 1
    for name, row in rows.items():
        assert name in NAMES and row.name == name, name
        assert load(os.path.join(ROOT, "experiments", f"{name}.py")).to_dict() == row.to_dict(), name
