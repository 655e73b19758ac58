"""ResNet-50, LARS, without data augmentation: the 'without' row beside experiments/resnet50_8k.py.

Every value (and its source) is that file's, except: PAPER.md says the paper reports ResNet-50
with and without augmentation; this row uses the central 224/256 crop only (what the paper's
setting without augmentation did exactly: NOT FOUND).

    python -m lars_jax.main --config experiments/resnet50_8k_noaug.py \
        --workdir runs/resnet50_8k_noaug
"""
import importlib.util
import os


def get_config():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet50_8k.py")
    spec = importlib.util.spec_from_file_location("resnet50_8k", path)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    c = base.get_config()
    c.name = "resnet50_8k_noaug"
    c.augment = False  # the 'without augmentation' row
    return c
