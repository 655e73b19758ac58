"""ResNet-50, batch 32,768, LARS, 90 epochs, with data augmentation: a row of You et al.'s
ResNet-50 table.

You et al.: 90 epochs at batch 32,768 took 1 hour on 512 KNL (72.4% top-1), later 20 minutes on
2,048 KNL (75.4%; the 20 minutes are in the ICPP 2018 abstract); which augmentation each used was
not confirmed.

Values and their sources: row "resnet50_32k" of experiments/tables/resnet50.py.

    python -m lars_jax.main --config experiments/resnet50_32k.py --workdir runs/resnet50_32k
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "resnet50.py")).resnet50_32k
