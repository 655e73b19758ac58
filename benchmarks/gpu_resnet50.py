"""ResNet-50 v1.5 training throughput and MFU on one accelerator, plus the LARS update alone.

Runs lars_jax's real train step (Trainer: shard_map gradients, LARS, BatchNorm) on synthetic data
already on the device, at each per-device batch in --batches, checks that the loss is finite and
falls, and prints images/s, step time, achieved TFLOP/s and MFU. Model FLOPs per step are
3 x 2 x the forward pass's conventional multiply-adds (models.analytic_macs: 4.09 GMACs for
ResNet-50 at 224) x batch. Not XLA's cost analysis: on GPU the convolutions become cuDNN custom
calls that it does not count (it reported 1.7 TFLOP/s for 5,144 img/s). Then times one optimizer update on ResNet-50's
parameter tree for optax.sgd, optax.lars and lars_jax.lars (benchmarks/optimizer.py).

On a lent GPU machine (no network, no TensorFlow; ml_collections carried as a wheel in .whl/):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_resnet50.py --out $OUT/gpu_resnet50.json
Here, on CPU, a smoke run of the same code: .venv/bin/python benchmarks/gpu_resnet50.py --tiny
(without --tiny on a CPU it stops at once: ResNet-50 at batch 256 would need ~34 GB)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common_cli import require_accelerator  # noqa: E402

# Dense bf16 peaks (no sparsity), NVIDIA H100/H200 SXM datasheets: 989.4 TFLOP/s for both.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}


def peak_tflops(device_kind: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_kind), None)


def measure(batch: int, *, model: str, image_size: int, dtype: str, steps: int, warmup: int) -> dict:
    from lars_jax import configs, models, train

    c = configs.get_base_config()
    configs.merge(c, dict(
        name=f"{model}_synthetic", global_batch_size=batch * jax.device_count(),
        data=dict(name="synthetic", image_size=image_size, synthetic_num_classes=1000),
        model=dict(name=model, dtype=dtype), optimizer=dict(name="lars", lars=dict(weight_decay=1e-4)),
        schedule=dict(total_steps=warmup + steps + 1, warmup_epochs=0.0, base_learning_rate=2.0),
        loop=dict(layer_stats_every=0)))
    trainer = train.Trainer(c)
    state = trainer.sharded_init_state()
    data = next(trainer.train_batches(0))  # the synthetic batch, reused: the device alone is timed
    t0 = time.perf_counter()
    state, metrics = trainer.train_step(state, data)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, metrics = trainer.train_step(state, data)
    jax.block_until_ready(state)
    losses, times = [], []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = trainer.train_step(state, data)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t)
        losses.append(float(metrics["loss"]))
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite loss at batch {batch}: {losses}")
    if not np.mean(losses[-3:]) < np.mean(losses[:3]):
        raise AssertionError(f"loss did not fall at batch {batch}: {losses}")
    step_s = float(np.median(times))
    flops = 3 * 2 * models.analytic_macs(trainer.model, (1, image_size, image_size, 3)) * c.global_batch_size
    tflops = flops / step_s / 1e12
    peak = peak_tflops(jax.devices()[0].device_kind)
    return {"model": model, "image_size": image_size, "dtype": dtype, "per_device_batch": batch,
            "devices": jax.device_count(), "images_per_second": c.global_batch_size / step_s,
            "step_ms": step_s * 1e3, "compile_s": compile_s, "model_tflop_per_step": flops / 1e12,
            "achieved_tflops": tflops, "peak_tflops": peak, "mfu": tflops / peak if peak else None,
            "loss_first": losses[0], "loss_last": losses[-1], "step_times_s": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256,128", help="per-device batch sizes")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tiny", action="store_true", help="resnet20 at 32x32, batch 16: a CPU smoke run")
    parser.add_argument("--skip-optimizer", action="store_true")
    parser.add_argument("--out", default="", help="JSON file to write (default: none)")
    args = parser.parse_args()
    if not args.tiny:
        require_accelerator("benchmarks/gpu_resnet50.py", "on CPU try --tiny")

    model, size = ("resnet20", 32) if args.tiny else ("resnet50", 224)
    batches = [16] if args.tiny else [int(b) for b in args.batches.split(",")]
    steps = 6 if args.tiny else args.steps
    kind = jax.devices()[0].device_kind
    print(f"{kind} x {jax.device_count()}, jax {jax.__version__}")
    rows = [measure(b, model=model, image_size=size, dtype=args.dtype, steps=steps,
                    warmup=1 if args.tiny else args.warmup) for b in batches]
    print(f"{'model':9s} {'dtype':9s} {'batch':>6s} {'img/s':>9s} {'step ms':>8s} {'TFLOP/s':>8s} {'MFU':>6s} "
          f"{'compile s':>9s} {'loss first->last':>17s}")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] else "-"
        print(f"{r['model']:9s} {r['dtype']:9s} {r['per_device_batch']:6d} {r['images_per_second']:9.0f} "
              f"{r['step_ms']:8.2f} {r['achieved_tflops']:8.1f} {mfu:>6s} {r['compile_s']:9.1f} "
              f"{r['loss_first']:8.3f}->{r['loss_last']:.3f}")
    optimizer_rows = []
    if not (args.skip_optimizer or args.tiny):
        import optimizer as bench
        optimizer_rows = bench.run(repeats=50)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device_kind": kind, "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
                       "peak_source": "NVIDIA H100/H200 SXM datasheet, dense bf16 989.4 TFLOP/s",
                       "flops_convention": "3 x 2 x analytic forward MACs x batch", "train_step": rows,
                       "optimizer_update": optimizer_rows}, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
