"""Synthetic data for throughput benchmarks: no files, no TensorFlow.

Train: ONE batch of standard-normal images and uniform labels, drawn from (seed,
process_index), is yielded at every step (the same arrays each time: the host costs nothing and
the numbers measure the device). Eval: cfg.synthetic_num_eval examples (default NUM_EVAL = 1024);
images are again one fixed batch, labels differ per example, padding as for the real datasets.
"""
from __future__ import annotations

import itertools

import numpy as np

from lars_jax.data import base, indexing

NAME = "synthetic"
NUM_TRAIN = 1281167  # ImageNet's, so epochs and schedules mean the same as for imagenet2012
NUM_EVAL = 1024


def get_info(cfg) -> base.DatasetInfo:
    size = cfg.get("image_size") or 224
    return base.DatasetInfo(name=NAME, num_train=NUM_TRAIN, num_eval=cfg.get("synthetic_num_eval", NUM_EVAL),
                            image_shape=(size, size, 3), num_classes=cfg.synthetic_num_classes)


def _images(info: base.DatasetInfo, rng, batch: int) -> np.ndarray:
    return rng.standard_normal((batch, *info.image_shape), dtype=np.float32)


def train_iterator(cfg, *, seed, local_batch_size, process_index=0, process_count=1, start_step=0):
    del process_count, start_step  # every step is the same batch
    info = get_info(cfg)
    rng = np.random.default_rng([seed, process_index])
    batch = {"image": _images(info, rng, local_batch_size),
             "label": rng.integers(0, info.num_classes, local_batch_size, dtype=np.int32)}
    return itertools.repeat(batch)


def eval_iterator(cfg, *, seed, local_batch_size, process_index=0, process_count=1):
    info = get_info(cfg)
    rng = np.random.default_rng([seed, 1 << 20])  # the same eval set on every process
    labels = rng.integers(0, info.num_classes, info.num_eval, dtype=np.int32)
    images = _images(info, rng, local_batch_size)

    def batches():
        for b in range(indexing.num_eval_batches(info.num_eval, local_batch_size, process_count)):
            idx, valid = indexing.eval_indices(b, info.num_eval, local_batch_size=local_batch_size,
                                               process_index=process_index,
                                               process_count=process_count)
            yield {"image": np.where(valid[:, None, None, None], images, 0).astype(np.float32),
                   "label": np.where(valid, labels[idx], 0).astype(np.int32),
                   "mask": valid.astype(np.float32)}

    return batches()


DATASET = base.Dataset(NAME, get_info, train_iterator, eval_iterator)
