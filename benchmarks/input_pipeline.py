"""Host input-pipeline throughput on this machine (CPU only).

1. ImageNet train preprocessing (lars_jax.data.imagenet_preprocess.train_image: JPEG decode of a
   random-resized crop + resize + flip + normalise) on mock JPEGs of ImageNet-like size (500x375,
   smooth random content, quality 90, so sizes are near real ImageNet JPEGs, ~110 KB), with
   tf.data on 1 thread and on all cores. Reading tfrecords from disk is not included.
2. The Fashion-MNIST train iterator (numpy gather + crop + flip + normalise), batch 256.
3. Beside each, the jitted train step of the same config on this machine (ResNet-50 at 224 for
   ImageNet, small_cnn for Fashion-MNIST; synthetic batches already built), and the measured
   H100 train step (benchmarks/results/scaling_gpu.json, shipped with lars_jax.scaling): whichever
   is slower is the bottleneck.

    .venv/bin/python benchmarks/input_pipeline.py [--out runs/benchmarks/input_pipeline_cpu.json] [--seconds 4]

Prints a table and writes JSON (to record: --out benchmarks/results/input_pipeline_cpu.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
from common_cli import default_out  # noqa: E402


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
    config.data.name, config.data.augment = "fashion_mnist", augment
    return rate(data.train_iterator(config.data, seed=0, local_batch_size=batch), batch, seconds)


def train_step_rate(model: str, image_shape, num_classes: int, batch: int, steps: int) -> float:
    """Images/s of lars_jax's jitted LARS train step on one device, batch already on the device."""
    import jax

    from lars_jax import configs, data, parallel, train

    c = configs.get_base_config()
    configs.merge(c, dict(global_batch_size=batch, data=dict(name="synthetic"), model=dict(name=model),
                          schedule=dict(total_steps=steps + 1, warmup_epochs=0.0), loop=dict(layer_stats_every=0)))
    info = data.DatasetInfo("synthetic", 1_281_167, 0, tuple(image_shape), num_classes)
    trainer = train.Trainer(c, mesh=parallel.make_mesh(jax.devices()[:1]), info=info)
    rng = np.random.default_rng(0)
    batch_arrays = parallel.global_batch({"image": rng.standard_normal((batch, *image_shape), dtype=np.float32),
                                          "label": rng.integers(0, num_classes, batch).astype(np.int32)},
                                         trainer.mesh)
    state = trainer.sharded_init_state()
    state, _ = trainer.train_step(state, batch_arrays)  # compile
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, _ = trainer.train_step(state, batch_arrays)
    jax.block_until_ready(state)
    return batch * steps / (time.perf_counter() - t0)


def gpu_train_rate() -> tuple[float, str] | None:
    """The recorded H100 ResNet-50 train-step rate (bf16), if a GPU run left one."""
    from lars_jax.scaling.measured import MEASURED_GPU_JSON as path
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rec = json.load(f)
    rows = [r for r in rec.get("rows", []) if r.get("dtype") == "bfloat16"]
    if not rows:
        return None
    return float(rows[0]["images_per_second"]), f"{rec.get('device', 'GPU')} {rec.get('date', '')}".strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=default_out("input_pipeline_cpu.json"),
                        help="JSON file to write (default: %(default)s)")
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

    steps = {"imagenet": train_step_rate("resnet50", (224, 224, 3), 1000, batch=8, steps=2),
             "fashion_mnist": train_step_rate("small_cnn", (28, 28, 1), 10, batch=256, steps=10)}
    for row in rows:
        row["train_step_images_per_s"] = steps["imagenet" if "imagenet" in row["pipeline"] else "fashion_mnist"]
    print(f"{'pipeline':<58} {'threads':>7} {'img/s':>10} {'img/s/core':>11} {'train step img/s':>17}")
    for row in rows:
        print(f"{row['pipeline']:<58} {row['threads']:>7} {row['images_per_s']:>10.0f} "
              f"{row['images_per_s_per_core']:>11.0f} {row['train_step_images_per_s']:>17.1f}")
    print(f"mock JPEGs: 500x375, mean {mean_kb:.0f} KB; cores available: {cores}")
    print(f"On this CPU the train step is the bottleneck: ResNet-50 {steps['imagenet']:.1f} img/s against "
          f"{rows[1]['images_per_s']:.0f} img/s of ImageNet preprocessing.")
    gpu = gpu_train_rate()
    if gpu:
        per_core = rows[0]["images_per_s_per_core"]
        print(f"On an accelerator ({gpu[1]}: {gpu[0]:.0f} img/s ResNet-50 bf16) the pipeline needs about "
              f"{gpu[0] / per_core:.0f} cores like these per device to keep up.")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": rows, "cores": cores, "gpu_train_step": gpu, "mock_jpeg_mean_kb": mean_kb,
                   "mock_jpeg_shape": [375, 500, 3], "seconds_per_row": args.seconds,
                   "machine": platform.processor() or platform.machine(),
                   "tensorflow": tf.__version__, "date": time.strftime("%Y-%m-%d")}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
