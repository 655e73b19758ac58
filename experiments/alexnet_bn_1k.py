"""AlexNet-BN, batch 1,024, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

Every value (and its source) is experiments/alexnet_bn_512.py's, except the lines below: the batch
and what depends on it. The peak LR follows that row's sqrt rule: 2 * sqrt(1024 / 512) = 2.83.

    python -m lars_jax.main --config experiments/alexnet_bn_1k.py --workdir runs/alexnet_bn_1k

Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (128 images per
device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch fits
(e.g. 1,024 over 2 devices or more).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "alexnet_bn_512.py"))
    c.name = "alexnet_bn_1k"
    # NOT FOUND in You et al. for this batch; chose 2 epochs, as at 512
    c.schedule.warmup_epochs = 2.0
    c.global_batch_size = 1024  # the row's batch
    return c
