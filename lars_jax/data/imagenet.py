"""ImageNet ILSVRC-2012 through tfds `imagenet2012` (manual download), streamed with tf.data.

Sharding: process p reads `tfds.even_splits(split, process_count)[p]` (train: drop_remainder, so
every process has the same number of examples n_p and of steps per epoch, n_p // L; the
incomplete last batch of each epoch is dropped). Process batches are disjoint, but unlike the
in-memory datasets the batch of a step depends on process_count.

Determinism: epoch e of process p is a tf.data pipeline seeded by (seed, p, e): file order
(tfds shuffle_files), a SHUFFLE_BUFFER-example shuffle, and stateless per-example augmentation
seeded by (that seed, position in the epoch); tf.data runs with deterministic=True. So the batches
are a function of (seed, step, process_index, process_count) on a given tfds/TF version.

Resume at start_step k is exact: it rebuilds epoch k // steps_per_epoch and skips
(k % steps_per_epoch) * L examples BEFORE decoding. The skipped examples are still read from disk
and pass through the shuffle buffer, so resuming mid-epoch costs reading up to one epoch of JPEG
bytes per process (~140 GB / process_count for a full epoch, i.e. minutes on local SSD), never more.
A new epoch starts a new pipeline: the first batch of each epoch waits for the shuffle buffer to fill.
"""
from __future__ import annotations

import itertools
import os

import numpy as np

from lars_jax.data import base, indexing, tfds_util

NAME = "imagenet2012"
NUM_TRAIN, NUM_EVAL, NUM_CLASSES = 1281167, 50000, 1000
MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
SHUFFLE_BUFFER = 10_000  # examples of encoded JPEG (~110 KB each): ~1.1 GB of host memory


def image_size(cfg) -> int:
    return cfg.get("image_size") or 224


def manual_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "downloads", "manual")


def _have_manual_files(data_dir: str) -> bool:
    return all(os.path.exists(os.path.join(manual_dir(data_dir), f)) for f in MANUAL_FILES)


def _not_found(data_dir: str) -> base.DataNotFoundError:
    where = manual_dir(data_dir)
    return base.DataNotFoundError(
        f"ImageNet ({NAME}) is not prepared in {data_dir}, and the manual download is absent. "
        f"Download {' and '.join(MANUAL_FILES)} from https://image-net.org/download-images "
        f"(registration needed) into {where}/, then prepare once (~150 GB): "
        f"`{tfds_util.prepare_command(NAME, data_dir)}`. Set config.data.data_dir to use another tfds data_dir.")


def get_info(cfg) -> base.DatasetInfo:
    data_dir = base.tfds_data_dir(cfg)
    if not (base.tfds_prepared(data_dir, NAME) or _have_manual_files(data_dir)):
        raise _not_found(data_dir)
    size = image_size(cfg)
    return base.DatasetInfo(name=NAME, num_train=NUM_TRAIN, num_eval=NUM_EVAL,
                            image_shape=(size, size, 3), num_classes=NUM_CLASSES)


def _builder(cfg):
    _, tfds = tfds_util.import_tfds()
    data_dir = base.tfds_data_dir(cfg)
    builder = tfds.builder(NAME, data_dir=data_dir)
    if not builder.is_prepared():
        if not _have_manual_files(data_dir):
            raise _not_found(data_dir)
        builder.download_and_prepare(  # extracts the tars: hours, once
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir(data_dir)))
    return builder


def _seed(*ints) -> int:
    """A 63-bit int mixing `ints`: tf.data and stateless-op seed for one (seed, process, epoch)."""
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _options(tf):
    options = tf.data.Options()
    options.deterministic = True
    return options


def train_iterator(cfg, *, seed, local_batch_size, process_index=0, process_count=1, start_step=0):
    """Infinite; {"image": float32 [L, S, S, 3], "label": int32 [L]} (see module doc)."""
    tf, tfds = tfds_util.import_tfds()
    from lars_jax.data import imagenet_preprocess as pp
    builder = _builder(cfg)
    size, batch = image_size(cfg), local_batch_size
    split = tfds.even_splits("train", n=process_count, drop_remainder=True)[process_index]
    num_local = builder.info.splits[split].num_examples
    steps = num_local // batch
    if steps == 0:
        raise ValueError(f"local batch {batch} exceeds the {num_local} train examples of a process")
    first_epoch, skip = divmod(start_step, steps)

    def epoch_dataset(epoch: int, skip_batches: int):
        epoch_seed = _seed(seed, process_index, epoch)
        ds = builder.as_dataset(
            split=split, shuffle_files=True, decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=epoch_seed, options=_options(tf)))
        ds = ds.shuffle(min(SHUFFLE_BUFFER, num_local), seed=epoch_seed)
        ds = ds.take(steps * batch).enumerate().skip(skip_batches * batch)

        def preprocess(i, ex):
            if cfg.augment:
                image = pp.train_image(ex["image"], tf.stack([tf.constant(epoch_seed, tf.int64), i]), size)
            else:
                image = pp.eval_image(ex["image"], size)
            return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return ds.with_options(_options(tf))

    def batches():
        for epoch in itertools.count(first_epoch):
            yield from tfds.as_numpy(epoch_dataset(epoch, skip if epoch == first_epoch else 0))

    return batches()


def eval_iterator(cfg, *, seed, local_batch_size, process_index=0, process_count=1):
    """One pass over `validation`: {"image", "label", "mask"}; every process yields the same number
    of batches, ceil(num_eval / (L * process_count)), padded with image 0, label 0, mask 0."""
    tf, tfds = tfds_util.import_tfds()
    from lars_jax.data import imagenet_preprocess as pp
    del seed  # the validation split is read in order
    builder = _builder(cfg)
    size, batch = image_size(cfg), local_batch_size
    num_eval = builder.info.splits["validation"].num_examples
    split = tfds.even_splits("validation", n=process_count)[process_index]
    count = builder.info.splits[split].num_examples
    total = indexing.num_eval_batches(num_eval, batch, process_count) * batch

    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(options=_options(tf)))
    ds = ds.take(count).map(
        lambda ex: {"image": pp.eval_image(ex["image"], size),
                    "label": tf.cast(ex["label"], tf.int32), "mask": tf.constant(1.0)},
        num_parallel_calls=tf.data.AUTOTUNE)
    padding = tf.data.Dataset.from_tensors(
        {"image": tf.zeros([size, size, 3]), "label": tf.constant(0), "mask": tf.constant(0.0)})
    ds = ds.concatenate(padding.repeat()).take(total).batch(batch).prefetch(tf.data.AUTOTUNE)
    return iter(tfds.as_numpy(ds.with_options(_options(tf))))


DATASET = base.Dataset(NAME, get_info, train_iterator, eval_iterator)
