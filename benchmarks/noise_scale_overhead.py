"""What measuring the gradient noise scale costs in the train step: the same step with
config.loop.noise_scale_decay None (off) and 0.99 (on), timed side by side.

    .venv/bin/python benchmarks/noise_scale_overhead.py [--rounds 40] [--steps 3] [--models mlp,...]
        [--out runs/benchmarks/noise_scale_overhead.json]

Setups: the sweeps' batch-256 step on one device in 8 microbatches of 32 (the small batch is a
microbatch: one squared norm per piece) for the MLP and the small CNN, and the small CNN and
ResNet-20 (59 parameter tensors) on 8 data-parallel devices (fake CPU devices here; the small
batch is a device's share: one squared norm per device). A setup needing more devices than there
are is skipped.

Each round times --steps steps of off and of on (which goes first alternates), after warm-up, on
one batch already on the devices. The machine's speed drifts (a shared host), so a round's on/off
ratio is the sample: the table gives its median over the rounds with a 95% bootstrap interval, for
the wall time and for the process's CPU time (all threads: what the extra work costs even where it
runs beside the critical path). Last, a profile of the `on` step attributes the time of every
operation to the estimator or not (its operations carry steps.NOISE_SCALE_SCOPE in their HLO
metadata): the estimator's share of the step's operation time, its own cost without the scheduling
around it (read from trace events named by HLO operation, as XLA:CPU's are; n/a where none is).
"""
from __future__ import annotations

import os
import sys

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# the CPU runtime records each operation in a profile only with this flag
os.environ["XLA_FLAGS"] += " --xla_cpu_enable_xprof_traceme=true"

import argparse  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common_cli import code_version, default_out  # noqa: E402

from lars_jax import configs, data, parallel, steps, train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = [  # (label, model, devices, microbatches)
    ("mlp, 1 device x 8 microbatches", "mlp", 1, 8),
    ("small_cnn, 1 device x 8 microbatches", "small_cnn", 1, 8),
    ("small_cnn, 8 devices", "small_cnn", 8, 1),
    ("resnet20, 8 devices", "resnet20", 8, 1),
]


class Stepper:
    """One compiled train step on a fixed batch, timed in place."""

    def __init__(self, model: str, devices: int, microbatches: int, decay):
        config = configs.get_base_config()
        configs.merge(config, dict(global_batch_size=256, model=dict(name=model, bn_group_size=32),
                                   mesh=dict(microbatches=microbatches),
                                   schedule=dict(total_steps=1000, warmup_epochs=0.0),
                                   loop=dict(layer_stats_every=0, noise_scale_decay=decay)))
        info = data.DatasetInfo("fashion_mnist", 60000, 10000, (28, 28, 1), 10)
        self.trainer = train.Trainer(config, mesh=parallel.make_mesh(jax.devices()[:devices]), info=info)
        rng = np.random.default_rng(0)
        self.batch = parallel.global_batch({"image": rng.standard_normal((256, 28, 28, 1), dtype=np.float32),
                                            "label": rng.integers(0, 10, 256).astype(np.int32)}, self.trainer.mesh)
        self.state = self.trainer.sharded_init_state()
        self.run(2)  # compile and warm up

    def run(self, n: int) -> tuple[float, float]:
        """(wall, CPU) seconds per step over n steps."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            self.state, _ = self.trainer.train_step(self.state, self.batch)
        jax.block_until_ready(self.state)
        return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n

    def hlo_text(self) -> str:
        return self.trainer.train_step.lower(self.state, self.batch).compile().as_text()


def median_ratio(on: list[float], off: list[float], seed: int = 0) -> tuple[float, float, float]:
    """median of the per-round on/off ratios - 1, and a 95% percentile-bootstrap interval of it."""
    ratios = np.asarray(on) / np.asarray(off)
    boot = np.median(np.random.default_rng(seed).choice(ratios, (2000, len(ratios))), axis=1)
    return float(np.median(ratios) - 1), float(np.quantile(boot, 0.025) - 1), float(np.quantile(boot, 0.975) - 1)


def estimator_ops(hlo: str) -> tuple[set[str], set[str]]:
    """(every operation of the entry computation, those whose HLO metadata is wholly or partly in
    the estimator's scope); a fusion's metadata is that of the operations it calls."""
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"\n%?([\w.\-]+) \(.*?\) -> .*? \{\n(.*?)\n\}", hlo, re.S)}
    scope = re.compile(rf"(^|/){steps.NOISE_SCALE_SCOPE}/")
    ops, mine = set(), set()
    for line in hlo[hlo.index("ENTRY"):].splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = ", line)
        if not m:
            continue
        called = re.search(r"calls=%([\w.\-]+)", line)
        metadata = bodies.get(called.group(1), "") if called else line
        ops.add(m.group(1))
        if any(scope.search(name) for name in re.findall(r'op_name="([^"]+)"', metadata)):
            mine.add(m.group(1))
    return ops, mine


def estimator_share(stepper: Stepper, n: int) -> float | None:
    """The estimator's operations' share of the operation time of n profiled steps (None: the profile
    names no operation of the step, as off CPU). Operations mixing its work with the model's count as
    its: an upper bound."""
    ops, mine = estimator_ops(stepper.hlo_text())
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        stepper.run(n)
        jax.profiler.stop_trace()
        trace = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        profile = jax.profiler.ProfileData.from_file(trace[0])
        total = theirs = 0
        for plane in profile.planes:
            for line in plane.lines:
                for event in line.events:
                    if event.name in ops:
                        total += event.duration_ns
                        theirs += event.duration_ns if event.name in mine else 0
    return theirs / total if total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3, help="steps per round and variant")
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--models", default=",".join(dict.fromkeys(m for _, m, _, _ in SETUPS)),
                        help="comma-separated models whose setups to run (default: all)")
    parser.add_argument("--out", default=default_out("noise_scale_overhead.json"),
                        help="JSON file to write (default: runs/benchmarks/noise_scale_overhead.json)")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = sorted(set(models) - {m for _, m, _, _ in SETUPS})
    if unknown:
        sys.exit(f"noise_scale_overhead.py: --models: no setup for {', '.join(unknown)} "
                 f"(known: {', '.join(dict.fromkeys(m for _, m, _, _ in SETUPS))})")
    rows = []
    print(f"{'setup':<38} {'off ms':>7} {'on ms':>7}  {'wall on/off - 1 [95%]':<23} {'CPU on/off - 1 [95%]':<23} "
          f"estimator's share of op time")
    for label, model, devices, k in SETUPS:
        if model not in models:
            continue
        if devices > jax.device_count():
            print(f"{label:<38} skipped: needs {devices} devices, found {jax.device_count()}")
            continue
        off, on = Stepper(model, devices, k, None), Stepper(model, devices, k, 0.99)
        times = {"off": [], "on": []}
        for r in range(args.rounds):
            for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                times[name].append((off if name == "off" else on).run(args.steps))
        wall = {name: [w for w, _ in v] for name, v in times.items()}
        cpu = {name: [c for _, c in v] for name, v in times.items()}
        wall_ratio, cpu_ratio = median_ratio(wall["on"], wall["off"]), median_ratio(cpu["on"], cpu["off"])
        share = estimator_share(on, args.profile_steps)
        rows.append({"setup": label, "off_ms": 1e3 * statistics.median(wall["off"]),
                     "on_ms": 1e3 * statistics.median(wall["on"]), "overhead": wall_ratio[0],
                     "overhead_95": wall_ratio[1:], "cpu_overhead": cpu_ratio[0], "cpu_overhead_95": cpu_ratio[1:],
                     "estimator_share_of_op_time": share, "wall_s": wall, "cpu_s": cpu})
        pct = lambda r: f"{100 * r[0]:+5.1f}% [{100 * r[1]:+.1f}, {100 * r[2]:+.1f}]"  # noqa: E731
        print(f"{label:<38} {rows[-1]['off_ms']:7.1f} {rows[-1]['on_ms']:7.1f}  {pct(wall_ratio):<23} "
              f"{pct(cpu_ratio):<23} {'n/a' if share is None else f'{100 * share:.2f}%'}", flush=True)
    doc = {"benchmark": "noise_scale_overhead", "date": datetime.date.today().isoformat(),
           "jax": jax.__version__, "backend": jax.default_backend(),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "load_average": os.getloadavg(),
           "code": code_version(ROOT), "rounds": args.rounds, "steps_per_round": args.steps,
           "profile_steps": args.profile_steps, "batch": 256, "rows": rows}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
