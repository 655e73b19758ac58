"""AlexNet-BN, batch 32,768, LARS, 100 epochs: one row of the paper's AlexNet-BN table.

You et al.: 100 epochs of AlexNet-BN at batch 32k took 24 minutes (v1 abstract) on 512 Intel KNL
(Xeon Phi 7250) chips, 64 images per KNL; later 11 minutes on 2,048 Xeon Platinum 8160 (ICPP 2018
abstract).
Every value (and its source) is experiments/alexnet_bn_512.py's, except the lines below: the batch
and what depends on it. The peak LR follows that row's sqrt rule: 2 * sqrt(32768 / 512) = 16.

    python -m lars_jax.main --config experiments/alexnet_bn_32k.py --workdir runs/alexnet_bn_32k

Memory: `microbatches` is set so that one 8-accelerator machine holds the batch (512 images per
device per microbatch on 8 devices); set --config.mesh.microbatches=1 when the per-device batch fits
(e.g. 32,768 over 64 devices or more).
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "alexnet_bn_512.py"))
    c.name = "alexnet_bn_32k"
    # NOT FOUND in You et al. for this batch; chose 8 epochs, the value confirmed at 8k (the
    # largest batch with a confirmed warmup)
    c.schedule.warmup_epochs = 8.0
    c.global_batch_size = 32768  # the row's batch
    c.mesh.microbatches = 8  # memory only, see the module docstring
    return c
