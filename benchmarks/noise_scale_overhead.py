"""What measuring the gradient noise scale costs in the train step: the same step with
config.loop.noise_scale_decay None (off) and 0.99 (on), timed side by side.

    .venv/bin/python benchmarks/noise_scale_overhead.py [--rounds 9] [--steps 5]
        [--out runs/benchmarks/noise_scale_overhead.json]

Setups: the sweeps' batch-256 step on one device in 8 microbatches of 32 (the small batch is a
microbatch: one squared norm per piece) for the MLP and the small CNN, and the small CNN on 8 fake
devices (the small batch is a device's share: one squared norm per device, a scalar all-reduce).
Rounds alternate off/on, each timing --steps steps after warm-up on one batch already on the
devices; the table gives the medians and on/off - 1.
"""
from __future__ import annotations

import os
import sys

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common_cli import code_version, default_out  # noqa: E402

from lars_jax import configs, data, parallel, train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = [  # (label, model, devices, microbatches)
    ("mlp, 1 device x 8 microbatches", "mlp", 1, 8),
    ("small_cnn, 1 device x 8 microbatches", "small_cnn", 1, 8),
    ("small_cnn, 8 fake devices", "small_cnn", 8, 1),
]


def stepper(model: str, devices: int, microbatches: int, decay):
    config = configs.get_base_config()
    configs.merge(config, dict(global_batch_size=256, model=dict(name=model, bn_group_size=32),
                               mesh=dict(microbatches=microbatches), schedule=dict(total_steps=1000, warmup_epochs=0.0),
                               loop=dict(layer_stats_every=0, noise_scale_decay=decay)))
    info = data.DatasetInfo("fashion_mnist", 60000, 10000, (28, 28, 1), 10)
    trainer = train.Trainer(config, mesh=parallel.make_mesh(jax.devices()[:devices]), info=info)
    rng = np.random.default_rng(0)
    batch = parallel.global_batch({"image": rng.standard_normal((256, 28, 28, 1), dtype=np.float32),
                                   "label": rng.integers(0, 10, 256).astype(np.int32)}, trainer.mesh)
    holder = {"state": trainer.sharded_init_state()}

    def run(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            holder["state"], metrics = trainer.train_step(holder["state"], batch)
        jax.block_until_ready(holder["state"])
        return (time.perf_counter() - t) / n

    run(2)  # compile and warm up
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=default_out("noise_scale_overhead.json"),
                        help="JSON file to write (default: runs/benchmarks/noise_scale_overhead.json)")
    args = parser.parse_args()
    rows = []
    for label, model, devices, k in SETUPS:
        off, on = stepper(model, devices, k, None), stepper(model, devices, k, 0.99)
        times = {"off": [], "on": []}
        for _ in range(args.rounds):
            times["off"].append(off(args.steps))
            times["on"].append(on(args.steps))
        med = {k_: statistics.median(v) for k_, v in times.items()}
        rows.append({"setup": label, "off_ms": 1e3 * med["off"], "on_ms": 1e3 * med["on"],
                     "overhead": med["on"] / med["off"] - 1, "times_s": times})
        print(f"{label:<40} off {1e3 * med['off']:8.1f} ms  on {1e3 * med['on']:8.1f} ms  "
              f"overhead {100 * rows[-1]['overhead']:+.1f}%", flush=True)
    doc = {"benchmark": "noise_scale_overhead", "date": datetime.date.today().isoformat(),
           "jax": jax.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
           "load_average": os.getloadavg(), "code": code_version(ROOT), "rounds": args.rounds,
           "steps_per_round": args.steps, "batch": 256, "rows": rows}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
