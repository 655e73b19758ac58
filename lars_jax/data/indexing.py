"""Which examples make up each batch: pure index arithmetic, shared by the in-memory datasets.

Train: global step k of a global batch B = local_batch_size * process_count reads positions
[i*B, (i+1)*B) of a seeded permutation of the train split for epoch e, where (e, i) =
divmod(k, num_train // B). The incomplete last batch of each epoch is DROPPED (each epoch is a
fresh permutation), so an epoch has num_train // B steps. Process p takes slice [p*L, (p+1)*L) of
the global batch, so the per-process batches of one step are disjoint and their concatenation
in process order is exactly the batch a single process with local_batch_size B would see.
Everything is a function of (seed, k, process_index, process_count): resuming is exact and free.
"""
from __future__ import annotations

import functools

import numpy as np

from lars_jax.batching import steps_per_epoch

# Separate random streams for the permutation and for augmentation, so neither shifts the other.
PERMUTATION_STREAM = 0
AUGMENT_STREAM = 1


@functools.lru_cache(maxsize=2)  # the current and the previous epoch are all a loop needs
def epoch_permutation(seed: int, epoch: int, num_train: int) -> np.ndarray:
    """int64 [num_train]: the order of the train split in `epoch`."""
    perm = np.random.default_rng([seed, PERMUTATION_STREAM, epoch]).permutation(num_train)
    perm.flags.writeable = False  # shared through the cache
    return perm


def train_indices(seed: int, step: int, num_train: int, *, local_batch_size: int,
                  process_index: int = 0, process_count: int = 1) -> np.ndarray:
    """int64 [local_batch_size]: train-split indices this process reads at global `step`."""
    global_batch = local_batch_size * process_count
    epoch, i = divmod(step, steps_per_epoch(num_train, global_batch))
    start = i * global_batch + process_index * local_batch_size
    return epoch_permutation(seed, epoch, num_train)[start:start + local_batch_size]


def num_eval_batches(num_eval: int, local_batch_size: int, process_count: int) -> int:
    """Batches every process yields in one eval pass (the same on all processes)."""
    return -(-num_eval // (local_batch_size * process_count))


def eval_indices(batch: int, num_eval: int, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [L], valid bool [L]) of eval batch `batch` for this process.

    Global eval batch b covers eval examples [b*G, (b+1)*G), G = L * process_count, in order;
    positions past num_eval are padding (valid False, index 0).
    """
    start = batch * local_batch_size * process_count + process_index * local_batch_size
    idx = np.arange(start, start + local_batch_size)
    valid = idx < num_eval
    return np.where(valid, idx, 0), valid
