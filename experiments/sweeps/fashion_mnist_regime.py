"""The MLP batch-size sweep in the paper's regime: every batch gets hundreds of updates.

.venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_regime.py \
    --workdir runs/sweep_fashion_mnist_regime --out benchmarks/results/sweep_fashion_mnist_regime

Why: You et al.'s ResNet-50 claim is for ImageNet at 32k over 90 epochs: 90 x 1,281,167 / 32,768
= about 3,500 updates (their Table 1 counts iterations as epochs x 1.28M / B), each batch 2.5% of
the data. fashion_mnist_batch.py's 16k column
gets 45 updates, each batch a third of the data: there every optimizer loses, a regime nobody
claimed. Here the largest batch, 8,192, gets 6 steps per epoch x 50 epochs = 300 updates.

Every value is fashion_mnist_batch.py's (and its sources) except:
- batches 256, 1,024, 2,048, 4,096, 8,192: around the MLP's mid-training B_simple of ~1.7k in
  fashion_mnist_batch.py's batch-256 runs (docs/results.md), from ~0.15x to ~4.7x it (8x would be
  ~14k: 3 steps per epoch, 150 updates in 50 epochs, below the 300 this sweep promises);
- 50 epochs at every batch (the paper's fixed-epoch comparison), 2 of them warmup, then poly(2);
- 2 seeds (0, 1) at 256 and 8,192, 1 elsewhere.
Budget: ~1.5 s per MLP cell-epoch on 2 CPU cores (fashion_mnist_batch.py's 899 s for 40 cells of
15 epochs), so 41 cells x 50 epochs are about an hour.
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_batch.py"))
    c.name = c.base.name = "fashion_mnist_regime"
    c.base.schedule.num_epochs = 50.0
    c.batch_sizes = (256, 1024, 2048, 4096, 8192)
    c.extra_seeds = (1,)
    return c
