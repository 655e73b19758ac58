"""AlexNet (BVLC, with LRN), batch 512, momentum SGD, 100 epochs: the baseline row of You et al.'s
AlexNet table.

You et al.: the batch-512 AlexNet baseline, base LR 0.01 with poly(2) decay for 100 epochs,
reached about 58% top-1; on one DGX-1 (8 P100, single precision) 100 epochs of AlexNet took 6 h
9 min at batch 512 (2 h 10 min at batch 4096).

Values and their sources: row "alexnet_512" of experiments/tables/alexnet.py.

    python -m lars_jax.main --config experiments/alexnet_512.py --workdir runs/alexnet_512
"""
import os

from lars_jax.configs import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(__file__), "tables", "alexnet.py")).alexnet_512
