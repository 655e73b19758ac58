"""Host input-pipeline throughput on this machine (CPU only).

1. ImageNet train preprocessing (lars_jax.data.imagenet_preprocess.train_image: JPEG decode of a
   random-resized crop + resize + flip + normalise) on mock JPEGs of ImageNet-like size (500x375,
   smooth random content, quality 90, so sizes are near real ImageNet JPEGs, ~110 KB), with
   tf.data on 1 thread and on all cores. Reading tfrecords from disk is not included.
2. The Fashion-MNIST train iterator (numpy gather + crop + flip + normalise), batch 256.

    python benchmarks/input_pipeline.py [--out FILE] [--seconds 4]

Prints a table and writes JSON (default benchmarks/results/input_pipeline_cpu.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                           "input_pipeline_cpu.json")


def mock_jpegs(tf, count: int, height: int = 375, width: int = 500, quality: int = 90):
    """`count` JPEG strings: a smooth random field plus mild noise, like a photo in size and cost."""
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (height // 25, width // 25, 3)).astype(np.float32)
        smooth = tf.image.resize(coarse, [height, width], method="bicubic").numpy()
        image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        jpegs.append(tf.io.encode_jpeg(image, quality=quality).numpy())
    return jpegs


def rate(iterator, images_per_item: int, seconds: float, warmup_items: int = 2) -> float:
    """Images/s of `iterator` over about `seconds`, after `warmup_items` items."""
    for _ in range(warmup_items):
        next(iterator)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        n += images_per_item
    return n / (time.perf_counter() - start)


def imagenet_train(tf, jpegs, threads: int, seconds: float, size: int = 224, batch: int = 64):
    from lars_jax.data import imagenet_preprocess as pp
    ds = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
    ds = ds.map(lambda i, jpeg: pp.train_image(jpeg, tf.stack([tf.constant(0, tf.int64), i]), size),
                num_parallel_calls=threads)
    ds = ds.batch(batch).prefetch(2)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return rate(iter(ds.with_options(options)), batch, seconds)


def fashion_train(seconds: float, augment: bool, batch: int = 256):
    from lars_jax import configs, data
    config = configs.get_base_config()
    config.dataset, config.augment = "fashion_mnist", augment
    return rate(data.train_iterator(config, local_batch_size=batch), batch, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row")
    args = parser.parse_args()

    import tensorflow as tf
    from lars_jax.data import DataNotFoundError

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jpegs = mock_jpegs(tf, 64)
    mean_kb = float(np.mean([len(j) for j in jpegs]) / 1024)
    rows = []
    for threads in sorted({1, cores}):
        r = imagenet_train(tf, jpegs, threads, args.seconds)
        rows.append({"pipeline": "imagenet train (decode+rrc+flip, 224)", "threads": threads,
                     "images_per_s": r, "images_per_s_per_core": r / threads})
    for augment in (True, False):
        try:
            r = fashion_train(args.seconds, augment)
        except DataNotFoundError as e:
            print(f"fashion_mnist skipped: {e}")
            continue
        rows.append({"pipeline": f"fashion_mnist train iterator (augment={augment}, batch 256)",
                     "threads": 1, "images_per_s": r, "images_per_s_per_core": r})

    print(f"{'pipeline':<58} {'threads':>7} {'img/s':>10} {'img/s/core':>11}")
    for row in rows:
        print(f"{row['pipeline']:<58} {row['threads']:>7} {row['images_per_s']:>10.0f} "
              f"{row['images_per_s_per_core']:>11.0f}")
    print(f"mock JPEGs: 500x375, mean {mean_kb:.0f} KB; cores available: {cores}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "cores": cores, "mock_jpeg_mean_kb": mean_kb,
                   "mock_jpeg_shape": [375, 500, 3], "seconds_per_row": args.seconds,
                   "machine": platform.processor() or platform.machine(),
                   "tensorflow": tf.__version__, "date": time.strftime("%Y-%m-%d")}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
