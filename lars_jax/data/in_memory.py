"""Train and eval iterators over a split held in host memory as uint8 numpy arrays, and the one
registry entry (`TfdsInMemory`) that serves every small tfds dataset (Fashion-MNIST, CIFAR-10).

The whole split is read once, and each batch is a numpy gather + crop/flip + normalisation, far
cheaper per step than the train step.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Iterator

import numpy as np

from lars_jax import batching
from lars_jax.data import augment, base, indexing, tfds_util
from lars_jax.data.base import Split
from lars_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    mean: tuple  # per channel, in pixel units of [0, 1]
    std: tuple  # per channel, in pixel units of [0, 1]
    pad: int  # zero padding per side for the random crop
    flip: bool  # random horizontal flip

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """uint8 [..., C] -> float32 [..., C], (x/255 - mean) / std."""
        mean = np.asarray(self.mean, np.float32) * 255
        scale = 1 / (np.asarray(self.std, np.float32) * 255)
        return (images.astype(np.float32) - mean) * scale


def train_batches(split: Split, prep: Preprocessing, *, seed: int, augment_images: bool,
                  local_batch_size: int, process_index: int = 0, process_count: int = 1,
                  start_step: int = 0) -> Iterator[dict]:
    """Infinite; step k yields {"image": float32 [L, H, W, C], "label": int32 [L]}.

    Order and sharding as in `indexing` (incomplete last batch of each epoch dropped);
    augmentation as in `augment`. Both depend only on (seed, k, process_index, process_count).
    """
    num_train = len(split.labels)
    global_batch = local_batch_size * process_count
    batching.steps_per_epoch(num_train, global_batch)  # fail at the call, not at the first next()
    mine = slice(process_index * local_batch_size, (process_index + 1) * local_batch_size)

    def batches():
        for step in itertools.count(start_step):
            idx = indexing.train_indices(seed, step, num_train, local_batch_size=local_batch_size,
                                         process_index=process_index, process_count=process_count)
            images = split.images[idx]
            if augment_images:
                dy, dx, flipped = augment.sample(seed, step, global_batch, prep.pad, prep.flip)
                images = augment.crop_flip(images, dy[mine], dx[mine], flipped[mine], prep.pad)
            yield {"image": prep.normalise(images), "label": split.labels[idx]}

    return batches()


def eval_batches(split: Split, prep: Preprocessing, *, local_batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """One pass; yields {"image": float32 [L, H, W, C], "label": int32 [L], "mask": float32 [L]}.

    Every process yields num_eval_batches(...) batches; padding rows have image 0, label 0, mask 0.
    """
    num_eval = len(split.labels)

    def batches():
        for b in range(indexing.num_eval_batches(num_eval, local_batch_size, process_count)):
            idx, valid = indexing.eval_indices(b, num_eval, local_batch_size=local_batch_size,
                                               process_index=process_index,
                                               process_count=process_count)
            images = prep.normalise(split.images[idx])
            images[~valid] = 0
            yield {"image": images, "label": np.where(valid, split.labels[idx], 0).astype(np.int32),
                   "mask": valid.astype(np.float32)}

    return batches()


@dataclasses.dataclass(frozen=True)
class TfdsInMemory:
    """A registry entry for a small tfds dataset held in memory (see lars_jax.data for the API).

    prepare(cfg) -> tfds data_dir: makes the dataset available (prepares or downloads it) or
    raises DataNotFoundError saying how to get it; available(cfg): a cheap check that the files
    are there (prepared, or local sources `prepare` will read), so get_info need not prepare.
    """
    name: str
    info: base.DatasetInfo
    preprocessing: Preprocessing
    prepare: Callable[..., str]
    available: Callable[..., bool] = lambda cfg: False
    train_split: str = "train"
    eval_split: str = "test"
    supports_validation = True

    def _held_out(self, cfg) -> int:
        """config.data.validation_examples, checked: the last N train examples are held out."""
        base.native_image_size(cfg, self.name, self.info.image_shape[0])
        held = int(cfg.get("validation_examples") or 0)
        if not 0 <= held < self.info.num_train:
            raise ConfigError(f"config.data.validation_examples: must lie in [0, {self.info.num_train}) for "
                              f"{self.name}, got {held}")
        return held

    def get_info(self, cfg) -> base.DatasetInfo:
        held = self._held_out(cfg)
        if not self.available(cfg):
            self.prepare(cfg)
        return dataclasses.replace(self.info, num_train=self.info.num_train - held, num_validation=held)

    def _split(self, cfg, split: str) -> Split:
        """"train" (without the held-out examples), "validation" (them) or "eval" (the test split)."""
        held = self._held_out(cfg)
        if split == "eval":
            return tfds_util.load_split(self.name, self.prepare(cfg), self.eval_split)
        whole = tfds_util.load_split(self.name, self.prepare(cfg), self.train_split)
        keep = slice(len(whole.labels) - held, None) if split == "validation" else slice(0, len(whole.labels) - held)
        return Split(images=whole.images[keep], labels=whole.labels[keep])

    def check(self, cfg) -> None:
        """Reads (and caches) every split a run reads: a damaged file fails here, before training."""
        self._split(cfg, "train")
        self._split(cfg, "eval")

    def train_iterator(self, cfg, *, seed, local_batch_size, process_index=0, process_count=1, start_step=0):
        return train_batches(self._split(cfg, "train"), self.preprocessing, seed=seed,
                             augment_images=cfg.augment, local_batch_size=local_batch_size,
                             process_index=process_index, process_count=process_count, start_step=start_step)

    def eval_iterator(self, cfg, *, seed, local_batch_size, process_index=0, process_count=1, split="eval"):
        del seed  # the eval split is read in order
        if split == "validation" and not self._held_out(cfg):
            raise ConfigError("config.data.validation_examples: 0, so there is no validation split; set it > 0")
        return eval_batches(self._split(cfg, split), self.preprocessing, local_batch_size=local_batch_size,
                            process_index=process_index, process_count=process_count)
