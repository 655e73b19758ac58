"""CIFAR-10 (Krizhevsky 2009) through tfds `cifar10` (downloaded by tfds on first use).

Train: random crop of the image zero-padded by 4 pixels + horizontal flip, the usual CIFAR
recipe (He et al. 2016). Normalised with the train-split per-channel mean (0.4914, 0.4822, 0.4465)
and std (0.2470, 0.2435, 0.2616) of x/255.
"""
from __future__ import annotations

from lars_jax.data import base, in_memory, tfds_util

NAME = "cifar10"
INFO = base.DatasetInfo(name=NAME, num_train=50000, num_eval=10000, image_shape=(32, 32, 3),
                        num_classes=10)
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"  # what tfds' cifar10 downloads
PREPROCESSING = in_memory.Preprocessing(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                                        pad=4, flip=True)


def _how_to_get(data_dir: str) -> str:
    return (f"Prepare it on a machine with internet access: `{tfds_util.prepare_command(NAME, data_dir)}`, "
            f"then copy {data_dir}/{NAME} here or set config.data.data_dir to where it is.")


def ensure_prepared(cfg) -> str:
    data_dir = base.tfds_data_dir(cfg)
    if not base.tfds_prepared(data_dir, NAME):
        _, tfds = tfds_util.import_tfds()
        tfds_util.prepare_or_raise(tfds.builder(NAME, data_dir=data_dir), _how_to_get(data_dir), url=URL)
    return data_dir


DATASET = in_memory.TfdsInMemory(NAME, INFO, PREPROCESSING, prepare=ensure_prepared)
