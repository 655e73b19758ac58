"""AlexNet-BN, batch 2,048, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

Every value (and its source) is experiments/alexnet_bn_512.py's, except the lines below: the batch
and what depends on it. The peak LR follows that row's sqrt rule: 2 * sqrt(2048 / 512) = 4.

    python -m lars_jax.main --config experiments/alexnet_bn_2k.py --workdir runs/alexnet_bn_2k

Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (256 images per
device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch fits
(e.g. 2,048 over 4 devices or more).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "alexnet_bn_512.py"))
    c.name = "alexnet_bn_2k"
    # NOT FOUND in You et al. for this batch; chose 5 epochs (Goyal et al.'s warmup length),
    # between the 2 used at 1k and the paper's 13 at 4k
    c.schedule.warmup_epochs = 5.0
    c.global_batch_size = 2048  # the row's batch
    return c
