"""Types shared by every dataset: the info record, the error for absent data, the registry entry.

Nothing here imports TensorFlow: `import lars_jax.data` must work on a machine without it.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Iterator

import numpy as np

from lars_jax.errors import ConfigError, DataNotFoundError

# Set LARS_JAX_OFFLINE=1 to forbid every download attempt (tests, air-gapped hosts): absent data
# then raises DataNotFoundError at once instead of waiting for a network error.
OFFLINE_ENV = "LARS_JAX_OFFLINE"


@dataclasses.dataclass(frozen=True)
class Split:
    """A whole split in memory."""
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_train: int  # examples in the train split
    num_eval: int  # examples in the eval split
    image_shape: tuple  # (H, W, C) after preprocessing: what the model sees
    num_classes: int
    num_validation: int = 0  # examples held out of the train split (config.data.validation_examples)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registry entry: the three functions `lars_jax.data` dispatches to (signatures as there)."""
    name: str
    get_info: Callable[..., DatasetInfo]
    train_iterator: Callable[..., Iterator[dict]]
    eval_iterator: Callable[..., Iterator[dict]]
    supports_validation = False  # can hold out config.data.validation_examples of the train split


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes")


def tfds_data_dir(cfg) -> str:
    """cfg.data_dir (config.data), else tfds' own default ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    data_dir = cfg.get("data_dir")
    if data_dir:
        return os.path.expanduser(data_dir)
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def tfds_prepared(data_dir: str, name: str) -> bool:
    """Cheap, TensorFlow-free check for a prepared tfds dataset `name` (any version) in data_dir."""
    return any(os.path.exists(os.path.join(os.path.dirname(p), "features.json"))
               for p in glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json")))


def native_image_size(cfg, name: str, size: int) -> None:
    """Small datasets are used at their native resolution; refuse a config that asks otherwise."""
    requested = cfg.get("image_size")
    if requested not in (None, size):
        raise ConfigError(f"config.data.image_size: {requested}, but {name} is only offered at its native "
                          f"{size}x{size}; set config.data.image_size=None")
