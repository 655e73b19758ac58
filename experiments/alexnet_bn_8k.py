"""AlexNet-BN, batch 8,192, LARS, 100 epochs: a row of You et al.'s AlexNet-BN table.

Values and their sources: row "alexnet_bn_8k" of experiments/tables/alexnet.py.

    python -m lars_jax.main --config experiments/alexnet_bn_8k.py --workdir runs/alexnet_bn_8k
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "alexnet.py")).alexnet_bn_8k
