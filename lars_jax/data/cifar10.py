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
    return (f"Prepare it on a machine with internet access: `python -c \"import tensorflow_datasets "
            f"as tfds; tfds.builder('{NAME}', data_dir='{data_dir}').download_and_prepare()\"` "
            f"(or `tfds build {NAME} --data_dir={data_dir}`), then copy {data_dir}/{NAME} here "
            f"or set config.data_dir to where it is.")


def ensure_prepared(config) -> str:
    data_dir = base.tfds_data_dir(config)
    if not base.tfds_prepared(data_dir, NAME):
        _, tfds = tfds_util.import_tfds()
        tfds_util.prepare_or_raise(tfds.builder(NAME, data_dir=data_dir), _how_to_get(data_dir), url=URL)
    return data_dir


def get_info(config) -> base.DatasetInfo:
    base.native_image_size(config, NAME, 32)
    ensure_prepared(config)  # a no-op file check once prepared
    return INFO


def _split(config, split: str) -> in_memory.Split:
    base.native_image_size(config, NAME, 32)
    return tfds_util.load_split(NAME, ensure_prepared(config), split)


def train_iterator(config, *, local_batch_size, process_index=0, process_count=1, start_step=0):
    return in_memory.train_batches(
        _split(config, "train"), PREPROCESSING, seed=config.seed, augment_images=config.augment,
        local_batch_size=local_batch_size, process_index=process_index,
        process_count=process_count, start_step=start_step)


def eval_iterator(config, *, local_batch_size, process_index=0, process_count=1):
    return in_memory.eval_batches(_split(config, "test"), PREPROCESSING,
                                  local_batch_size=local_batch_size, process_index=process_index,
                                  process_count=process_count)
