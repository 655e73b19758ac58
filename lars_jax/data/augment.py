"""Vectorised random crop (with zero padding) and horizontal flip of uint8 image batches (numpy).

Offsets and flips for global step k are drawn for the whole GLOBAL batch from (seed, k), then each
process takes its slice: an example's augmentation does not depend on process_count.
"""
from __future__ import annotations

import numpy as np

from lars_jax.data import indexing


def sample(seed: int, step: int, global_batch: int, pad: int, flip: bool):
    """(dy, dx, flipped) for every position of the global batch at `step`.

    dy, dx: int64 [global_batch] in [0, 2*pad]; flipped: bool [global_batch] (all False if not flip).
    """
    rng = np.random.default_rng([seed, indexing.AUGMENT_STREAM, step])
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, global_batch))
    flipped = rng.random(global_batch) < 0.5 if flip else np.zeros(global_batch, bool)
    return dy, dx, flipped


def crop_flip(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, flipped: np.ndarray,
              pad: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, H, W, C].

    Pads each image with `pad` zero (black) pixels per side, takes the H x W window at (dy, dx),
    mirrored where `flipped`. One fancy-index gather does crop and flip for the whole batch.
    """
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = dy[:, None] + np.arange(h)  # [N, H]
    cols = np.where(flipped[:, None], np.arange(w)[::-1], np.arange(w)) + dx[:, None]  # [N, W]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
