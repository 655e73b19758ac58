"""AlexNet-BN, batch 4,096, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

Every value (and its source) is experiments/alexnet_bn_512.py's, except the lines below: the batch
and what depends on it. The peak LR follows that row's sqrt rule: 2 * sqrt(4096 / 512) = 5.66.

    python -m lars_jax.main --config experiments/alexnet_bn_4k.py --workdir runs/alexnet_bn_4k

Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (512 images per
device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch fits
(e.g. 4,096 over 8 devices or more).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "alexnet_bn_512.py"))
    c.name = "alexnet_bn_4k"
    # You et al.: LARS warmup of 13 epochs at 4k for AlexNet-BN
    c.schedule.warmup_epochs = 13.0
    c.global_batch_size = 4096  # the row's batch
    return c
