"""AlexNet-BN, batch 16,384, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

Every value (and its source) is experiments/alexnet_bn_512.py's, except the lines below: the batch
and what depends on it. The peak LR follows that row's sqrt rule: 2 * sqrt(16384 / 512) = 11.3.

    python -m lars_jax.main --config experiments/alexnet_bn_16k.py --workdir runs/alexnet_bn_16k

Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (512 images per
device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch fits
(e.g. 16,384 over 32 devices or more).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "alexnet_bn_512.py"))
    c.name = "alexnet_bn_16k"
    # NOT FOUND in You et al. for this batch; chose 8 epochs, the value confirmed at 8k (the
    # largest batch with a confirmed warmup)
    c.schedule.warmup_epochs = 8.0
    c.global_batch_size = 16384  # the row's batch
    c.mesh.microbatches = 4  # memory only, see the module docstring
    return c
