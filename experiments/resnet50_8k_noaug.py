"""ResNet-50, LARS, without data augmentation: the 'without' row beside experiments/resnet50_8k.py.

Every value (and its source) is that file's, except: You et al. report ResNet-50 with and
without augmentation; this row uses the central 224/256 crop only (what the paper's
setting without augmentation did exactly: NOT FOUND).

    python -m lars_jax.main --config experiments/resnet50_8k_noaug.py \
        --workdir runs/resnet50_8k_noaug
"""
import os

from lars_jax.configs import load_config


def get_config():
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet50_8k.py"))
    c.name = "resnet50_8k_noaug"
    c.data.augment = False  # the 'without augmentation' row
    return c
