"""The batch-size sweep of fashion_mnist_batch.py on a conv net with BatchNorm, the paper's kind of
network: experiments/fashion_mnist.py's small CNN (421,738 parameters), same protocol.

.venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_cnn_batch.py \
    --workdir runs/sweep_fashion_mnist_cnn --out benchmarks/results/sweep_fashion_mnist_cnn

Every value is fashion_mnist_batch.py's (and its sources) except:
- model small_cnn; batch 256, 4,096 and 16,384 (the 1,024 column dropped: the budget below);
- 5 epochs of the 50,000 training images (the default run's 91% takes 5 CNN epochs), 1 warmup
  epoch: at 16k that is 3 steps per epoch, 15 updates in all;
- LARS peak LR 8 (experiments/fashion_mnist.py's, tuned on this CNN at batch 512) x{1/2, 1, 2};
  Nesterov 0.1 x sqrt(B/256) x{1/2, 1, 2}; SGD the linear rule alone, as in the MLP sweep;
- 2 seeds at the smallest and largest batch (1 elsewhere).
Budget: the small CNN trains at ~2,000 images/s on this 2-core machine (the MLP ~20,000) in
pieces of at most 512 images, so 27 cells of 250,000 images each are about 65 minutes with
evaluations.
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_batch.py"))
    c.name = c.base.name = "fashion_mnist_cnn_batch"
    c.base.model.name = "small_cnn"  # lars_jax.models.small.SmallCNN: 2 x (conv3x3-BN-ReLU-pool), dense 128
    c.base.schedule.num_epochs = 5.0
    c.base.schedule.warmup_epochs = 1.0  # experiments/fashion_mnist.py's
    c.batch_sizes = (256, 4096, 16384)
    c.extra_seeds = (1,)
    # Batches above 512 run in pieces of 512 (the same math: BN groups stay 32): XLA's CPU
    # convolutions run one 4,096-image batch at half the images/s of 512-image pieces.
    c.max_microbatch_size = 512
    c.optimizers.lars.overrides.schedule.base_learning_rate = 8.0  # experiments/fashion_mnist.py's
    return c
