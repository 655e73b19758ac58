"""ResNet-50, batch 256, LARS, 90 epochs, with data augmentation: a row of You et al.'s
ResNet-50 table.

Values and their sources: row "resnet50_256" of experiments/tables/resnet50.py.

    python -m lars_jax.main --config experiments/resnet50_256.py --workdir runs/resnet50_256
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "resnet50.py")).resnet50_256
