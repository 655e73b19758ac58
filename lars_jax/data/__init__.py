"""Input pipelines: a registry of datasets behind three functions of the data config (config.data).

    info = get_info(cfg)                     # DatasetInfo; DataNotFoundError if the data is absent
    check(cfg)                               # DataNotFoundError naming a damaged file, before training
    train_iterator(cfg, seed=s, local_batch_size=L, process_index=p, process_count=P, start_step=k)
        # infinite: {"image": float32 [L, H, W, C] normalised, "label": int32 [L]}
    eval_iterator(cfg, seed=s, local_batch_size=L, process_index=p, process_count=P)
        # one pass: also "mask": float32 [L] (1 real, 0 padding); same batch count on every process

cfg.name picks the dataset; cfg.data_dir, cfg.augment, cfg.image_size (and cfg.synthetic_num_classes,
cfg.synthetic_num_eval) are its options. The train batch of global step k is a function of (seed,
k, process_index, process_count), so start_step=k resumes exactly; processes read disjoint parts of
each global batch. Details and the exact guarantees per dataset are in the module docs (in_memory/indexing:
fashion_mnist, cifar10; imagenet; synthetic). TensorFlow is imported only when a tfds dataset is read.
"""
from __future__ import annotations

from typing import Iterator

from lars_jax.data import cifar10, fashion_mnist, imagenet, synthetic
from lars_jax.data.base import OFFLINE_ENV, DataNotFoundError, Dataset, DatasetInfo

__all__ = ["DATASETS", "DataNotFoundError", "DatasetInfo", "OFFLINE_ENV", "get_info", "check",
           "train_iterator", "eval_iterator"]

DATASETS: dict = {m.DATASET.name: m.DATASET for m in (fashion_mnist, cifar10, imagenet, synthetic)}


def _dataset(cfg):
    if cfg.name not in DATASETS:
        raise ValueError(f"config.data.name: unknown dataset {cfg.name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[cfg.name]


def _check(local_batch_size: int, process_index: int, process_count: int) -> None:
    if local_batch_size <= 0:
        raise ValueError(f"local_batch_size must be > 0, got {local_batch_size}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count, got {process_index}, "
                         f"{process_count}")


def get_info(cfg) -> DatasetInfo:
    """Sizes and shapes of cfg.name; cheap once the data is prepared."""
    return _dataset(cfg).get_info(cfg)


def check(cfg) -> None:
    """Reads what a run of cfg will read, where that is cheap (the in-memory datasets' splits),
    so that a damaged file fails before training, not at the first evaluation after it."""
    entry = _dataset(cfg)
    if hasattr(entry, "check"):
        entry.check(cfg)


def train_iterator(cfg, *, seed: int, local_batch_size: int, process_index: int = 0,
                   process_count: int = 1, start_step: int = 0) -> Iterator[dict]:
    """Infinite iterator of this process's part of each global train batch, from start_step."""
    _check(local_batch_size, process_index, process_count)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    return _dataset(cfg).train_iterator(
        cfg, seed=seed, local_batch_size=local_batch_size, process_index=process_index,
        process_count=process_count, start_step=start_step)


def eval_iterator(cfg, *, seed: int = 0, local_batch_size: int, process_index: int = 0,
                  process_count: int = 1, split: str = "eval") -> Iterator[dict]:
    """One padded pass over a split, this process's part of each global eval batch. split: "eval"
    (the dataset's test / validation split) or "validation" (cfg.validation_examples held out of
    the train split; in-memory datasets only)."""
    _check(local_batch_size, process_index, process_count)
    kwargs = {"split": split} if split != "eval" else {}
    return _dataset(cfg).eval_iterator(cfg, seed=seed, local_batch_size=local_batch_size,
                                       process_index=process_index, process_count=process_count, **kwargs)
