"""Batch-size sweep on Fashion-MNIST: Goyal SGD vs LARS vs LR-searched Nesterov, same epochs.

python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py --workdir runs/sweep_fashion_mnist \
    --out benchmarks/results/sweep_fashion_mnist          # add --quick for a one-minute smoke run

PLACEHOLDER: values filled in after the pilot.
"""
import ml_collections

from lars_jax.configs import get_base_config


def get_config():
    base = get_base_config()
    base.name = "fashion_mnist_batch"
    base.dataset = "fashion_mnist"
    base.model = "mlp"
    base.augment = False
    base.num_epochs = 10.0
    base.warmup_epochs = 2.0
    base.decay = "poly"
    base.poly_power = 2.0
    base.momentum = 0.9
    base.weight_decay = 5e-4
    base.bn_group_size = 256
    base.eval_batch_size = 2000

    c = ml_collections.ConfigDict()
    c.name = "fashion_mnist_batch"
    c.base = base
    c.batch_sizes = (256, 1024, 4096, 16384)
    c.seeds = (0,)
    c.extra_seeds = (1,)
    c.extra_seed_batch_sizes = ("ends",)
    c.log_points = 40
    c.trust_ratio_optimizer = "lars"
    c.optimizer_order = ("sgd_goyal", "lars", "nesterov")
    c.optimizers = ml_collections.ConfigDict()
    c.optimizers.sgd_goyal = ml_collections.ConfigDict(dict(
        label="SGD, linear scaling + warmup",
        overrides=dict(optimizer="sgd", base_learning_rate=0.1, base_batch_size=256, lr_scaling="linear"),
        lr_multipliers=(1.0,)))
    c.optimizers.lars = ml_collections.ConfigDict(dict(
        label="LARS",
        overrides=dict(optimizer="lars", base_learning_rate=8.0, base_batch_size=256, lr_scaling="sqrt"),
        lr_multipliers=(1.0,)))
    c.optimizers.nesterov = ml_collections.ConfigDict(dict(
        label="Nesterov, LR search",
        overrides=dict(optimizer="nesterov", base_learning_rate=0.1, base_batch_size=256, lr_scaling="sqrt"),
        lr_multipliers=(0.5, 1.0, 2.0)))
    c.quick = dict(base=dict(total_steps=6, warmup_epochs=0.0), batch_sizes=(256, 1024), extra_seeds=(),
                   optimizers=dict(nesterov=dict(lr_multipliers=(0.5, 2.0))))
    return c
