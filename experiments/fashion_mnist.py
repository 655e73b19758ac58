"""Default: the small BatchNorm CNN on Fashion-MNIST with LARS, a few minutes on 2 CPU cores.

python -m lars_jax.main --config experiments/fashion_mnist.py --workdir runs/fashion_mnist
"""
from lars_jax.configs import get_base_config


def get_config():
    c = get_base_config()
    c.name = "fashion_mnist_lars"
    c.dataset = "fashion_mnist"  # Debian's dataset-fashion-mnist, prepared offline through tfds
    c.model = "small_cnn"
    c.augment = True
    c.optimizer = "lars"
    c.global_batch_size = 512
    c.num_epochs = 5.0
    # LARS as in the paper: eta = 0.001, momentum 0.9, poly(2) decay after linear warmup.
    c.trust_coefficient = 0.001  # You et al. 2017
    c.momentum = 0.9  # You et al. 2017
    c.poly_power = 2.0  # You et al. 2017
    c.decay = "poly"
    # Not from a paper: tuned here on Fashion-MNIST (README, "Default run").
    c.base_learning_rate = 8.0
    c.base_batch_size = 512
    c.lr_scaling = "none"
    c.warmup_epochs = 1.0
    c.weight_decay = 5e-4  # Caffe's AlexNet default, the paper's setting
    c.log_every = 20
    c.layer_stats_every = 100
    return c
