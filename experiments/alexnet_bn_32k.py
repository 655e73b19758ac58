"""AlexNet-BN, batch 32,768, LARS, 100 epochs: a row of You et al.'s AlexNet-BN table.

You et al.: 100 epochs of AlexNet-BN at batch 32k took 24 minutes (v1 abstract) on 512 Intel KNL
(Xeon Phi 7250) chips, 64 images per KNL; later 11 minutes on 2,048 Xeon Platinum 8160 (ICPP 2018
abstract).

Values and their sources: row "alexnet_bn_32k" of experiments/tables/alexnet.py.

    python -m lars_jax.main --config experiments/alexnet_bn_32k.py --workdir runs/alexnet_bn_32k
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "alexnet.py")).alexnet_bn_32k
