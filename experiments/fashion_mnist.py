"""Default: the small BatchNorm CNN on Fashion-MNIST with LARS (README, "Default run": its measured time).

python -m lars_jax.main --config experiments/fashion_mnist.py --workdir runs/fashion_mnist
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "fashion_mnist_lars"
    c.data.name = "fashion_mnist"  # Debian's dataset-fashion-mnist, prepared offline through tfds
    c.model.name = "small_cnn"
    c.data.augment = True
    c.optimizer.name = "lars"
    c.global_batch_size = 512
    c.schedule.num_epochs = 5.0
    # LARS as in the paper: eta = 0.001, momentum 0.9, poly(2) decay after linear warmup.
    c.optimizer.lars.trust_coefficient = 0.001  # You et al. 2017
    c.optimizer.lars.momentum = 0.9  # You et al. 2017
    c.schedule.poly_power = 2.0  # You et al. 2017
    c.schedule.decay = "poly"
    # Not from a paper: tuned here on Fashion-MNIST (README, "Default run").
    c.schedule.base_learning_rate = 8.0
    c.schedule.base_batch_size = 512
    c.schedule.lr_scaling = "none"
    c.schedule.warmup_epochs = 1.0
    c.optimizer.lars.weight_decay = 5e-4  # Caffe's AlexNet default, the paper's setting
    c.loop.log_every = 20
    c.loop.layer_stats_every = 100
    return c
