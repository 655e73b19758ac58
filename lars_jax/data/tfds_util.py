"""Lazy tfds helpers: TensorFlow is imported only when a tfds dataset is actually read."""
from __future__ import annotations

import functools
import os

import numpy as np

from lars_jax.data import base, in_memory


def import_tfds():
    """(tf, tfds), with TensorFlow kept off any accelerator: it only feeds the host pipeline."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_datasets as tfds
    try:
        tf.config.set_visible_devices([], "GPU")  # leave the GPU memory to JAX
    except RuntimeError:  # already initialised: nothing to change
        pass
    return tf, tfds


def prepare_or_raise(builder, how_to_get: str) -> None:
    """Downloads and prepares `builder` unless prepared; DataNotFoundError(how_to_get) on failure."""
    if builder.is_prepared():
        return
    if base.offline():
        raise base.DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} and downloads are disabled "
            f"({base.OFFLINE_ENV}=1). {how_to_get}")
    try:
        builder.download_and_prepare()
    except Exception as e:  # network, checksum, disk: all mean "not available here"
        raise base.DataNotFoundError(
            f"{builder.name} is not prepared in {builder.data_dir} and downloading it failed "
            f"({type(e).__name__}: {e}). {how_to_get}") from e


@functools.lru_cache(maxsize=4)
def load_split(name: str, data_dir: str, split: str) -> in_memory.Split:
    """A prepared tfds split, whole, as numpy (decoded once, then cached for this process)."""
    _, tfds = import_tfds()
    builder = tfds.builder(name, data_dir=data_dir)
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
    return in_memory.Split(images=np.ascontiguousarray(arrays["image"], dtype=np.uint8),
                           labels=np.asarray(arrays["label"], dtype=np.int32))
