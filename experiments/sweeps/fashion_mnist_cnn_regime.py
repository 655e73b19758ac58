"""The small CNN's batch-size sweep in the paper's regime: the largest batch gets 300 updates.

.venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_cnn_regime.py \
    --workdir runs/sweep_fashion_mnist_cnn_regime --out benchmarks/results/sweep_fashion_mnist_cnn_regime

Why: fashion_mnist_cnn_batch.py gives 16k 15 updates, where every optimizer loses (a regime the
paper never claimed: ImageNet at 32k gets about 3,500 in 90 epochs). Here, as in
fashion_mnist_regime.py for the MLP, every batch gets the same epochs and the largest one 300 updates.

Every value is fashion_mnist_cnn_batch.py's (and its sources) except:
- batches 256, 1,024, 2,048, placed by the noise scale, not the dataset: the batch-256 SGD run of
  fashion_mnist_cnn_batch.py measured B_simple 267 mid-training (docs/results.md), so the grid was
  to span ~1x to ~7.7x it. In this sweep's own 12.5-epoch runs B_simple is larger (SGD 748
  mid-training), so the grid spans 0.34x to 2.7x of it: short of the >= 4x asked. The same SGD
  run at 25 epochs measures 790 (docs/results.md), so 4,096 at 25 epochs (300 updates) would be
  5.2x, for 27 cells (2.3-2.8 hours); running a batch's LR trials as one vmapped
  program is 3-4x slower here, not faster (benchmarks/vmapped_lr_trials.py). 512 is left out for
  the budget: 300 updates at the largest batch B take 300 x B / 50,000 epochs at every batch,
  12.5 here;
- 12.5 epochs at every batch (2,048: 24 steps per epoch x 12.5 = 300 updates), 1 of them warmup;
- 3 seeds (0, 1, 2) at 256 and 2,048, 1 elsewhere (33 cells): the issue asked for 2; the third
  was added after LARS's first two seeds differed by 4 points at both batches.
Budget: 5,026 s (84 min) for the 27 cells of seeds 0 and 1, then 1,066 s for the 6 of seed 2, on 2
idle CPU cores (2026-12-06): ~160 s per batch-256 cell (pieces of 32 examples, ~4,000 images/s),
210-255 s per batch-1,024 cell and 176-194 s per batch-2,048 cell (pieces of 512, ~2,800-3,500
images/s).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_cnn_batch.py"))
    c.name = c.base.name = "fashion_mnist_cnn_regime"
    c.base.schedule.num_epochs = 12.5
    c.batch_sizes = (256, 1024, 2048)
    c.extra_seeds = (1, 2)
    return c
