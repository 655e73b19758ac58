"""Fashion-MNIST (Xiao et al. 2017) through tfds, offline from Debian's `dataset-fashion-mnist`.

Where the data comes from, in order:
  1. a prepared tfds `fashion_mnist` in the data_dir (config.data.data_dir or ~/tensorflow_datasets);
  2. the four IDX .gz files in $LARS_JAX_FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist,
     Debian's package), prepared once into the data_dir by `DebianFashionMNIST`;
  3. tfds' own download (unless LARS_JAX_OFFLINE=1).
Debian recompressed the files, so tfds' checksums reject them: the builder reads them directly.

Train: random crop of the image zero-padded by 2 pixels + horizontal flip (clothes are left-right
symmetric, so a flip makes a plausible example). Normalised with the train-split pixel mean 0.2860
and std 0.3530 (of x/255).
"""
from __future__ import annotations

import functools
import gzip
import os
import time
import zlib

import numpy as np

from lars_jax.data import base, in_memory, tfds_util

NAME = "fashion_mnist"
DIR_ENV = "LARS_JAX_FASHION_MNIST_DIR"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SHAPES = {"train": ((60000, 28, 28), (60000,)), "test": ((10000, 28, 28), (10000,))}
INFO = base.DatasetInfo(name=NAME, num_train=60000, num_eval=10000, image_shape=(28, 28, 1),
                        num_classes=10)
PREPROCESSING = in_memory.Preprocessing(mean=(0.2860,), std=(0.3530,), pad=2, flip=True)


def idx_dir() -> str:
    return os.environ.get(DIR_ENV) or DEBIAN_DIR


def _have_idx_files(directory: str) -> bool:
    return all(os.path.exists(os.path.join(directory, f)) for pair in FILES.values() for f in pair)


def read_idx(path: str, shape: tuple | None = None) -> np.ndarray:
    """A gzipped IDX file (LeCun's MNIST format) as a uint8 array of the shape in its header.

    DataNotFoundError, naming the file, if it is not gzip, is truncated, is not IDX of unsigned
    bytes, holds fewer or more bytes than its header says, or (given `shape`) has another shape.
    """
    fix = f"reinstall it (`sudo apt-get install --reinstall dataset-fashion-mnist`) or set {DIR_ENV}"
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise base.DataNotFoundError(f"{path} is unreadable or truncated ({type(e).__name__}: {e}); {fix}") from e
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:  # 0x08: unsigned bytes
        raise base.DataNotFoundError(f"{path} is not an IDX file of unsigned bytes; {fix}")
    ndim = data[3]
    header = 4 + 4 * ndim
    found = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(data) < header or len(data) - header != int(np.prod(found)) or (shape and found != shape):
        raise base.DataNotFoundError(
            f"{path} holds {max(len(data) - header, 0):,} bytes of data for a header of shape {found}"
            f"{f' (expected {shape})' if shape else ''}: a truncated or wrong file; {fix}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(found)


@functools.cache
def _debian_builder_cls():
    _, tfds = tfds_util.import_tfds()
    from absl import logging
    from tensorflow_datasets.image_classification import mnist

    class DebianFashionMNIST(mnist.FashionMNIST, skip_registration=True):
        """tfds' FashionMNIST built from local IDX files: same name, features and on-disk result.
        It says so, where tfds would announce a download ("Downloading and preparing dataset
        Unknown size") and its end ("downloaded and prepared")."""
        name = NAME

        def __init__(self, *, idx_dir: str, **kwargs):
            self._idx_dir = idx_dir
            self._started = time.monotonic()
            super().__init__(**kwargs)

        def _log_download_bytes(self):
            self._started = time.monotonic()
            logging.info("Preparing tfds' %s in %s from the IDX files in %s (nothing is downloaded); once, then "
                         "reused", NAME, self.data_dir, self._idx_dir)

        def _log_download_done(self):
            logging.info("%s prepared in %.1f s", NAME, time.monotonic() - self._started)

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return [tfds.core.SplitGenerator(
                name=split, gen_kwargs={"data_path": os.path.join(self._idx_dir, images),
                                        "label_path": os.path.join(self._idx_dir, labels)})
                for split, (images, labels) in FILES.items()]

        def _generate_examples(self, data_path, label_path):
            images, labels = read_idx(data_path), read_idx(label_path)  # checked in ensure_prepared
            for i in range(len(labels)):
                yield i, {"image": images[i][..., None], "label": int(labels[i])}

    return DebianFashionMNIST


def _how_to_get(data_dir: str) -> str:
    return (f"Install Debian's copy: `sudo apt-get install -y dataset-fashion-mnist` (IDX files in "
            f"{DEBIAN_DIR}), or set {DIR_ENV} to a directory holding "
            f"{', '.join(f for pair in FILES.values() for f in pair)}, or set config.data.data_dir to a "
            f"tfds data_dir with {NAME} prepared (looked in {data_dir}).")


def ensure_prepared(cfg) -> str:
    """Prepares the tfds dataset if needed (see module doc); returns its data_dir."""
    data_dir = base.tfds_data_dir(cfg)
    if base.tfds_prepared(data_dir, NAME):
        return data_dir
    directory = idx_dir()
    if _have_idx_files(directory):
        for split, files in FILES.items():  # a bad file is named here, not deep inside tfds
            for name, shape in zip(files, SHAPES[split]):
                read_idx(os.path.join(directory, name), shape)
        _debian_builder_cls()(idx_dir=directory, data_dir=data_dir).download_and_prepare()
        return data_dir
    _, tfds = tfds_util.import_tfds()
    builder = tfds.builder(NAME, data_dir=data_dir)
    tfds_util.prepare_or_raise(builder, f"No IDX files in {directory}. " + _how_to_get(data_dir),
                               url=type(builder).URL)
    return data_dir


DATASET = in_memory.TfdsInMemory(
    NAME, INFO, PREPROCESSING, prepare=ensure_prepared,
    available=lambda cfg: base.tfds_prepared(base.tfds_data_dir(cfg), NAME) or _have_idx_files(idx_dir()))
