"""ResNet-50, batch 32,768, LARS, 90 epochs, without data augmentation: the 'without' row
beside experiments/resnet50_32k.py in You et al.'s ResNet-50 table.

Values and their sources: row "resnet50_32k_noaug" of experiments/tables/resnet50.py.

    python -m lars_jax.main --config experiments/resnet50_32k_noaug.py --workdir runs/resnet50_32k_noaug
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "resnet50.py")).resnet50_32k_noaug
