"""Calibrate lars_jax.scaling against this machine: predict 1- and 8-device step times, then measure.

    .venv/bin/python benchmarks/calibrate_scaling.py [--steps 5] [--run-batch]
        [--out runs/benchmarks/scaling_calibration_cpu.json]

For each run (the Fashion-MNIST small_cnn of experiments/fashion_mnist.py, and a CIFAR-shaped
ResNet-20 with LARS) the script
  1. measures single-device throughput at half the timed batch, and the 1-device step at the batch;
  2. measures the all-reduce on the 8 fake devices at several message sizes and fits the ring
     model's alpha and bandwidth to it (2(p-1) alpha + 2(p-1)/p bytes / bw);
  3. predicts with lars_jax.scaling the 1-device step from the half-batch throughput, and the
     8-device step from the 1-device step (the model's compute input) and the fitted all-reduce;
  4. measures the 8-device step, and reports prediction vs measurement.
The 8 "devices" are XLA host devices sharing this machine's cores, so they add no compute: the
model's device throughput for the 8-device prediction is the host's divided by 8 (the compute term
equals the 1-device one) plus the all-reduce. Measured, XLA:CPU's single-device step leaves part of
the cores idle that 8 concurrent devices use, so a second prediction is printed: compute divided by
min(8, cores), and a third that also takes the 1-device throughput at the 8-device run's
per-device batch (XLA:CPU runs small batches faster per image: throughput is not constant in
batch). What none models (each device repeating the replicated optimizer update, per-tensor
all-reduces, other processes on the machine) shows up as the error. The four setups of a run are
timed round-robin, one step each per round, so that load from other processes hits all alike.

    .venv/bin/python benchmarks/calibrate_scaling.py --resnet50-throughput [--out runs/benchmarks/scaling_gpu.json]

measures instead ResNet-50's training throughput on the local accelerator (float32 and bfloat16,
batch 256), the "measured here" input lars_jax.scaling uses for that device (read it with
`python -m lars_jax.scaling --measured FILE`; the recorded one is benchmarks/results/scaling_gpu.json,
shipped as lars_jax/scaling/data/scaling_gpu.json). On a CPU it stops at once with one line.

Outputs go to runs/benchmarks/ unless --out says otherwise: recording over benchmarks/results/ is an
explicit --out benchmarks/results/<file>.
"""
from __future__ import annotations

import os
import sys

GPU_MODE = "--resnet50-throughput" in sys.argv
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_flags = os.environ.get("XLA_FLAGS", "")
if not GPU_MODE and "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

if not GPU_MODE:
    jax.config.update("jax_platforms", "cpu")
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from common_cli import code_version, default_out, require_accelerator  # noqa: E402

from lars_jax import configs, data, parallel, scaling, train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_config(name: str):
    """experiments/<name>.py's get_config()."""
    return configs.load_config(os.path.join(ROOT, "experiments", f"{name}.py"))


def fashion_mnist_config():
    return experiment_config("fashion_mnist")


def resnet20_config():
    c = configs.get_base_config()
    c.name = "cifar_resnet20_lars"
    c.data.name = "cifar10"
    c.model.name = "resnet20"
    c.optimizer.name = "lars"
    c.schedule.base_learning_rate = 2.0
    c.global_batch_size = 128
    c.loop.layer_stats_every = 0
    return c


RUNS = [
    {"label": "Fashion-MNIST small_cnn (experiments/fashion_mnist.py)", "model": "small_cnn",
     "config": fashion_mnist_config, "batch": 128,
     "info": data.DatasetInfo("fashion_mnist", 60000, 10000, (28, 28, 1), 10)},
    {"label": "ResNet-20, CIFAR-shaped synthetic batch, LARS", "model": "resnet20", "config": resnet20_config,
     "batch": 32,
     "info": data.DatasetInfo("cifar10", 50000, 10000, (32, 32, 3), 10)},
]


def time_calls(fn, steps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return times


def make_stepper(config, info, n_devices: int, batch: int):
    """A compiled train step of `config` at `batch` on the first n_devices: () -> new state."""
    config = config.copy_and_resolve_references()
    config.global_batch_size = batch
    mesh = parallel.make_mesh(jax.devices()[:n_devices])
    trainer = train.Trainer(config, mesh=mesh, info=info)
    t0 = time.perf_counter()
    holder = {"state": trainer.sharded_init_state()}
    rng = np.random.default_rng(0)
    gb = parallel.global_batch({"image": rng.standard_normal((batch, *info.image_shape), dtype=np.float32),
                                "label": rng.integers(0, info.num_classes, batch, dtype=np.int32)}, mesh)

    def step():
        holder["state"], _ = trainer.train_step(holder["state"], gb)
        return holder["state"]

    jax.block_until_ready(step())  # compile
    jax.block_until_ready(step())  # warm
    step.info = {"devices": n_devices, "batch": batch, "compile_and_first_step_s": time.perf_counter() - t0}
    return step


def step_times(config, info, n_devices: int, batch: int, steps: int) -> dict:
    step = make_stepper(config, info, n_devices, batch)
    times = time_calls(step, steps, warmup=0)
    return {**step.info, "median_s": statistics.median(times), "times_s": times}


def interleaved_step_times(config, info, setups: dict, steps: int) -> dict:
    """{name: (n_devices, batch)} -> {name: timing}; one step of each setup per round, so that load
    from other processes on the machine falls on all setups alike."""
    steppers = {name: make_stepper(config, info, n, b) for name, (n, b) in setups.items()}
    times = {name: [] for name in steppers}
    for _ in range(steps):
        for name, step in steppers.items():
            t = time.perf_counter()
            jax.block_until_ready(step())
            times[name].append(time.perf_counter() - t)
    return {name: {**steppers[name].info, "median_s": statistics.median(ts), "times_s": ts}
            for name, ts in times.items()}


def allreduce_fit(n_devices: int = 8, sizes=(2 ** 14, 2 ** 17, 2 ** 20, 2 ** 22, 2 ** 24), repeats: int = 9) -> dict:
    """Median time of a jitted cross-device sum (an all-reduce) of `sizes` bytes per device, and
    the ring model's alpha, bandwidth fitted by least squares to time = 2(p-1) a + 2(p-1)/p n / bw."""
    mesh = parallel.make_mesh(jax.devices()[:n_devices])
    f = jax.jit(lambda x: jnp.sum(x, axis=0), in_shardings=parallel.batch_sharded(mesh),
                out_shardings=parallel.replicated(mesh))
    rows = []
    for nbytes in sizes:
        x = jax.device_put(np.ones((n_devices, nbytes // 4), np.float32), parallel.batch_sharded(mesh))
        times = time_calls(lambda: f(x), repeats, warmup=2)
        rows.append({"bytes": nbytes, "median_s": statistics.median(times)})
    p = n_devices
    a = np.array([[2 * (p - 1), 2 * (p - 1) / p * r["bytes"]] for r in rows])
    y = np.array([r["median_s"] for r in rows])
    (alpha, inv_bw), *_ = np.linalg.lstsq(a, y, rcond=None)
    alpha, inv_bw = max(float(alpha), 0.0), max(float(inv_bw), 1e-15)
    for r in rows:
        r["fit_s"] = scaling.ring_allreduce_time(r["bytes"], p, 1 / inv_bw, alpha)
    return {"devices": p, "rows": rows, "alpha_s": alpha, "bandwidth_Bps": 1 / inv_bw}


def resnet50_throughput(steps: int, out: str) -> None:
    """ResNet-50 training throughput of our train step on the first local accelerator, float32 and
    bfloat16 (experiments/resnet50_32k.py and mlperf_resnet50_32k.py at a per-device batch of 256,
    synthetic data): the measured H100 input of lars_jax.scaling (benchmarks/results/scaling_gpu.json)."""
    require_accelerator("benchmarks/calibrate_scaling.py --resnet50-throughput",
                        "on CPU run it without --resnet50-throughput (the 1- vs 8-device CPU calibration)")
    dev = jax.devices()[0]
    info = data.DatasetInfo("imagenet2012", 1281167, 50000, (224, 224, 3), 1000)
    rows = []
    for name, label in (("resnet50_32k", "float32"), ("mlperf_resnet50_32k", "bfloat16")):
        config = experiment_config(name)
        config.global_batch_size = 256
        config.mesh.microbatches = 1
        r = step_times(config, info, 1, 256, steps)
        r.update(config=name, dtype=config.model.dtype, images_per_second=256 / r["median_s"])
        rows.append(r)
        print(f"{name} ({config.model.dtype}): {r['median_s'] * 1e3:.1f} ms per step of 256, "
              f"{r['images_per_second']:,.0f} img/s (compile + first step {r['compile_and_first_step_s']:.0f} s)",
              flush=True)
    kind = getattr(dev, "device_kind", str(dev))
    short = "H100" if "H100" in kind else kind
    doc = {"device": kind, "jax": jax.__version__, "date": datetime.date.today().isoformat(), "rows": rows,
           "resnet50_images_per_second": {short: max(r["images_per_second"] for r in rows)},
           "note": "train step of lars_jax.train.Trainer (LARS, layer statistics on), synthetic batch already on "
                   "the device, per-device batch 256; float32 uses XLA's default precision (TF32 on Hopper)"}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--run-batch", action="store_true",
                        help="time each run at its config's own batch (512 / 128) instead of the small default "
                             "batches (128 / 32) that keep this under two minutes on 2 busy cores")
    parser.add_argument("--resnet50-throughput", action="store_true",
                        help="instead: measure ResNet-50 img/s on the local accelerator (scaling_gpu.json)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: runs/benchmarks/"
                                                    "scaling_calibration_cpu.json, or scaling_gpu.json with "
                                                    "--resnet50-throughput)")
    args = parser.parse_args()
    if args.resnet50_throughput:
        return resnet50_throughput(args.steps, args.out or default_out("scaling_gpu.json"))
    out = args.out or default_out("scaling_calibration_cpu.json")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_start = os.getloadavg()

    facts = scaling.load_models()
    comm = allreduce_fit()
    print(f"all-reduce on 8 host devices: alpha {comm['alpha_s'] * 1e6:.1f} us, "
          f"bandwidth {comm['bandwidth_Bps'] / 1e9:.2f} GB/s (ring fit)")
    for r in comm["rows"]:
        print(f"  {r['bytes'] / 2 ** 20:8.3f} MiB: measured {r['median_s'] * 1e3:8.3f} ms, "
              f"fit {r['fit_s'] * 1e3:8.3f} ms")

    results = []
    for run in RUNS:
        config, info = run["config"](), run["info"]
        model = facts[run["model"]]
        batch = config.global_batch_size if args.run_batch else run["batch"]
        timed = interleaved_step_times(config, info, {"probe": (1, batch // 2), "one": (1, batch),
                                                      "small": (1, batch // 8), "eight": (8, batch)}, args.steps)
        probe, one, small, eight = (timed[k] for k in ("probe", "one", "small", "eight"))
        host_ips = probe["batch"] / probe["median_s"]  # images/s of one host device
        ips_small = small["batch"] / small["median_s"]  # at the 8-device run's per-device batch
        grad_bytes = model.gradient_bytes()
        t_comm8 = scaling.ring_allreduce_time(grad_bytes, 8, comm["bandwidth_Bps"], comm["alpha_s"])
        # 1 device at B, from the throughput measured at B / 2: all compute, no all-reduce.
        pred1 = scaling.iteration_time(batch / host_ips, 0.0)
        # 8 host devices at B, from the 1-device step at B: "shared host": each device runs at the
        # host's throughput / 8, so the compute term is the 1-device step, plus the all-reduce.
        # "All cores": for when one device leaves cores idle that 8 concurrent devices can use.
        t1 = one["median_s"]
        pred8 = scaling.iteration_time(t1, t_comm8)
        pred8_cores = scaling.iteration_time(t1 / min(8, cores), t_comm8)
        naive8 = scaling.iteration_time(t1 / 8, t_comm8)  # as if 8 real devices
        rows = [
            {"devices": 1, "batch": batch, "model": f"from the 1-device throughput at batch {batch // 2}",
             "predicted_s": pred1, "measured_s": one["median_s"]},
            {"devices": 8, "batch": batch, "model": "shared host: the 1-device step + ring all-reduce",
             "predicted_s": pred8, "measured_s": eight["median_s"], "t_comm_predicted_s": t_comm8},
            {"devices": 8, "batch": batch, "model": f"the 1-device step / {min(8, cores)} (all {cores} cores busy) "
             "+ ring all-reduce", "predicted_s": pred8_cores, "measured_s": eight["median_s"]},
            {"devices": 8, "batch": batch, "model": f"throughput at the per-device batch {batch // 8} (1 device), "
             f"/ {min(8, cores)} cores + ring all-reduce",
             "predicted_s": scaling.iteration_time(batch / ips_small / min(8, cores), t_comm8),
             "measured_s": eight["median_s"]},
            {"devices": 8, "batch": batch, "model": "as if 8 real devices (wrong here, for contrast)",
             "predicted_s": naive8, "measured_s": eight["median_s"]},
        ]
        for r in rows:
            r["error"] = r["predicted_s"] / r["measured_s"] - 1
        results.append({"run": run["label"], "model": run["model"], "params": model.params,
                        "gradient_bytes": grad_bytes, "forward_flops": model.forward_flops,
                        "probe": probe, "host_images_per_s": host_ips, "probe_per_device_batch": small,
                        "host_effective_gflops": host_ips * model.train_flops() / 1e9,
                        "measured": {"1": one, "8": eight}, "rows": rows})
        print(f"\n{run['label']}: single-device throughput {host_ips:,.0f} img/s at batch {probe['batch']} "
              f"({host_ips * model.train_flops() / 1e9:.1f} GFLOP/s effective); all-reduce of "
              f"{grad_bytes / 1e6:.2f} MB predicted {t_comm8 * 1e3:.2f} ms")
        print(f"  {'devices':>7} {'batch':>6} {'predicted':>10} {'measured':>10} {'error':>7}  model")
        for r in rows:
            print(f"  {r['devices']:>7} {r['batch']:>6} {r['predicted_s'] * 1e3:>8.1f}ms "
                  f"{r['measured_s'] * 1e3:>8.1f}ms "
                  f"{r['error']:>+7.1%}  {r['model']}")

    doc = {"allreduce": comm, "runs": results, "cores": cores, "machine": platform.machine(),
           "jax": jax.__version__, "date": datetime.date.today().isoformat(), "steps": args.steps,
           "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
           "code": code_version(ROOT),
           "note": "8 XLA host devices share the host's cores: compute does not scale with them beyond the "
                   "cores a single device leaves idle. The machine is shared; see the load averages."}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
