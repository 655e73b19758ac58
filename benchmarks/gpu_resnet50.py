"""ResNet-50 v1.5 training on one GPU as the training loop runs it, beside PyTorch, with a profile by op kind.

One prepared plan, every figure measured side by side on the same card in one run:
  1. lars_jax's real train step (Trainer: shard_map gradients, LARS, BatchNorm, bf16 activations) on a
     synthetic batch already on the device, steps dispatched back to back with one sync per round, as
     `python -m lars_jax.main` runs them (the loop fetches metrics only at log points);
  2. VARIANTS of the step (how XLA runs it, how the max pool differentiates) built in one process and
     timed in alternating rounds, so that each round gives a paired ratio; every variant's first 8
     losses are compared with the first variant's (the same math);
  3. the PyTorch peer (benchmarks/torch_resnet50.py: torchvision resnet50, bf16 autocast, channels_last,
     SGD, torch.compile and eager) at the same batches;
  4. a profile of the step by kind of operation (benchmarks/step_profile.py);
  5. the gradient noise scale's cost with 2 microbatches (on against off, rolled and unrolled).
The plan runs in order of importance; a time budget (--budget-s) skips what no longer fits and says so.
Results are written after every job (gpu_resnet50.json), raw traces and HLO beside them (profile_<batch>.tar.gz).

On a lent GPU machine (no network, no TensorFlow; ml_collections carried as a wheel in .whl/):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. python3 benchmarks/gpu_resnet50.py --out-dir $OUT
Here, on CPU, a smoke run of the whole plan on a small net: .venv/bin/python benchmarks/gpu_resnet50.py --tiny
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common_cli import code_version  # noqa: E402

# XLA's GPU command buffers (CUDA graphs) leave convolutions out by default, so a ResNet step runs as
# ~160 short graphs between cuDNN calls; CONVOLUTION lets the graphs hold them too.
CMD_CONV = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,DYNAMIC_SLICE_FUSION,CONVOLUTION"
# name -> how the step differs from the library's defaults: XLA options of the jit, and "pool": "flax"
# for flax's max pool (select_and_scatter gradient) in place of lars_jax.models.conv.max_pool.
VARIANTS = {
    "main": {"pool": "flax", "compiler_options": {}},  # the step as it was on main (cb35eb5)
    "main_again": {"pool": "flax", "compiler_options": {}},  # the same: an A/A check of harness and math
    "cmdbuf": {"pool": "flax", "compiler_options": {"xla_gpu_enable_command_buffer": CMD_CONV}},
    "taps": {"compiler_options": {}},
    "taps+cmdbuf": {"compiler_options": {"xla_gpu_enable_command_buffer": CMD_CONV}},
    "default": {},  # whatever the library does by default now
}
# Dense bf16 peaks (no sparsity), NVIDIA H100/H200 SXM datasheets: 989.4 TFLOP/s for both.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}
AUTOTUNE_CACHE = "/tmp/lars_jax_autotune"  # shared by the job processes: the same conv algorithms
JOBS = ("variants", "torch", "headline", "noise", "batches", "torch-batches")  # the plan, in this order


# ----------------------------------------------------------------------------------------------- worker
@contextlib.contextmanager
def _pool(which: str | None):
    """Models built (traced) inside use flax's max pool when which == "flax"."""
    from flax import linen as nn
    from lars_jax.models import conv

    original = conv.max_pool
    if which == "flax":
        conv.max_pool = nn.max_pool
    try:
        yield
    finally:
        conv.max_pool = original


class _Stepper:
    """A trainer's jitted step on one batch, run as the loop runs it: no sync until `run` ends."""

    def __init__(self, spec: dict, variant: str, batch: int, *, microbatches: int = 1, noise_decay=None,
                 unroll=None, want_hlo: bool = False):
        import jax
        from lars_jax import configs, train

        c = configs.get_base_config()
        configs.merge(c, dict(
            name=f"{spec['model']}_synthetic", global_batch_size=batch * jax.device_count(),
            data=dict(name="synthetic", image_size=spec["image_size"], synthetic_num_classes=1000),
            model=dict(name=spec["model"], dtype=spec["dtype"]),
            optimizer=dict(name="lars", lars=dict(weight_decay=1e-4)),
            schedule=dict(total_steps=100_000, warmup_epochs=0.0, base_learning_rate=2.0),
            mesh=dict(microbatches=microbatches, microbatch_unroll=unroll),
            loop=dict(layer_stats_every=0, noise_scale_decay=noise_decay)))
        self.variant, self.batch_size, self.hlo = variant, batch, ""
        with _pool(VARIANTS[variant].get("pool")):  # the step is traced here, at its first call
            self.trainer = train.Trainer(c, compiler_options=VARIANTS[variant].get("compiler_options"))
            self.state, self.batch = self.trainer.sharded_init_state(), next(self.trainer.train_batches(0))
            t = time.perf_counter()
            self.losses = [float(self.step()["loss"])]
            self.compile_s = time.perf_counter() - t
            if want_hlo:
                try:
                    self.hlo = self.trainer.train_step.lower(self.state, self.batch).compile().as_text()
                except Exception as e:  # noqa: BLE001 - the profile then classifies kernels by name
                    print(f"no HLO for {variant}: {e!r}"[:300], flush=True)
        self.losses += [float(self.step()["loss"]) for _ in range(7)]

    def step(self):
        self.state, metrics = self.trainer.train_step(self.state, self.batch)
        return metrics

    def run(self, n: int) -> float:
        """Seconds per step of n steps dispatched back to back, one sync at the end."""
        import jax

        t = time.perf_counter()
        for _ in range(n):
            metrics = self.step()
        jax.block_until_ready((self.state, metrics))
        return (time.perf_counter() - t) / n


def _paired(steppers: list[_Stepper], steps: int, rounds: int) -> dict[str, list[float]]:
    """Rounds in which every stepper runs `steps` steps, the order rotating; {variant: seconds/step}."""
    for s in steppers:
        s.run(steps)  # one untimed round each
    times = {s.variant: [] for s in steppers}
    for r in range(rounds):
        for s in steppers[r % len(steppers):] + steppers[:r % len(steppers)]:
            times[s.variant].append(s.run(steps))
    return times


def _ratio(a: list[float], b: list[float]) -> dict:
    """Median of the per-round ratios a/b with a 95% bootstrap interval."""
    import numpy as np

    ratios = np.asarray(a) / np.asarray(b)
    boot = np.median(np.random.default_rng(0).choice(ratios, (2000, len(ratios))), axis=1)
    return {"median": float(np.median(ratios)), "ci95": [float(np.quantile(boot, 0.025)),
                                                           float(np.quantile(boot, 0.975))]}


def _throughput_job(spec: dict, out_dir: str) -> list[dict]:
    import jax
    import step_profile
    from lars_jax import models

    batch = spec["batch"]
    steppers = [_Stepper(spec, v, batch, want_hlo=bool(spec["profile"])) for v in spec["variants"]]
    times = _paired(steppers, spec["steps"], spec["rounds"])
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in jax.devices()[0].device_kind), None)
    flops = 3 * 2 * models.analytic_macs(steppers[0].trainer.model, (1, spec["image_size"], spec["image_size"], 3))
    first = steppers[0].variant
    rows = []
    for s in steppers:
        step_s = statistics.median(times[s.variant])
        tflops = flops * batch / step_s / 1e12
        rows.append({"framework": "lars_jax", "variant": s.variant, "per_device_batch": batch,
                     "images_per_second": batch / step_s, "step_ms": 1e3 * step_s, "compile_s": s.compile_s,
                     "achieved_tflops": tflops, "mfu": tflops / peak if peak else None, "losses": s.losses,
                     "round_step_s": times[s.variant], "baseline": first,
                     "compiler_options": s.trainer.compiler_options, "pool": VARIANTS[s.variant].get("pool", "lars_jax"),
                     "speedup_vs_baseline": _ratio(times[first], times[s.variant]),
                     "loss_rel_diff_vs_baseline": max(abs(a - b) / abs(b) for a, b in zip(s.losses, steppers[0].losses))})
    # profile the baseline and the fastest variant
    fastest = max(rows, key=lambda r: r["images_per_second"])["variant"]
    for s in steppers:
        if spec["profile"] and s.variant in (first, fastest):
            tag = f"{s.variant.replace('+', '_')}_{batch}"
            if s.hlo:
                with open(os.path.join(out_dir, f"hlo_{tag}.txt"), "w") as f:
                    f.write(s.hlo)
            summary = step_profile.profile_step(s.run, spec["profile_steps"], s.hlo,
                                                keep=os.path.join(out_dir, f"trace_{tag}.xplane.pb"))
            print(step_profile.format_summary(f"profile {s.variant} at {batch}", summary), flush=True)
            next(r for r in rows if r["variant"] == s.variant)["profile"] = summary
    return rows


def _noise_job(spec: dict) -> list[dict]:
    """The noise scale's cost with 2 microbatches: on against off, the microbatch loop rolled (a while
    loop, the GPU default) and unrolled; all four in alternating rounds."""
    variant, batch = spec["variants"][0], spec["batch"]
    steppers = []
    for unroll in (False, True):
        for decay in (None, 0.99):
            s = _Stepper(spec, variant, batch, microbatches=2, noise_decay=decay, unroll=unroll)
            s.variant = f"{'unrolled' if unroll else 'rolled'} {'on' if decay else 'off'}"
            steppers.append(s)
    times = _paired(steppers, spec["steps"], 2 * spec["rounds"])
    row = {"framework": "lars_jax", "variant": variant, "per_device_batch": batch, "microbatches": 2,
           "step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()}, "round_step_s": times}
    for loop in ("rolled", "unrolled"):
        row[f"noise_scale_overhead_{loop}"] = _ratio(times[f"{loop} on"], times[f"{loop} off"])
    row["unrolled_vs_rolled_off"] = _ratio(times["unrolled off"], times["rolled off"])
    return [row]


def worker(spec: dict, out_dir: str) -> None:
    """One job in this process: prints `RESULT {json}` per row."""
    import jax

    if spec.get("cache_dir"):
        jax.config.update("jax_compilation_cache_dir", spec["cache_dir"])
    try:
        rows = _noise_job(spec) if spec.get("noise") else _throughput_job(spec, out_dir)
    except Exception as e:  # noqa: BLE001 - reported in the results, the plan goes on
        import traceback

        traceback.print_exc()
        rows = [{"framework": "lars_jax", "variant": ",".join(spec["variants"]), "per_device_batch": spec["batch"],
                 "error": repr(e)[:800]}]
    for row in rows:
        print("RESULT " + json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------ orchestrator
def _run(cmd: list[str], env: dict, timeout: float, log) -> list[dict]:
    """Runs a job's process; its output goes to the log; returns its RESULT rows (those printed before
    a timeout too)."""
    rows, failed = [], None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(timeout, 1))
        output = proc.stdout + proc.stderr
        failed = proc.returncode or None
    except subprocess.TimeoutExpired as e:
        output = "".join(x.decode() if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr))
        failed = f"timed out after {timeout:.0f} s"
    for line in output.splitlines():
        if line.startswith("RESULT "):
            rows.append(json.loads(line[7:]))
        elif line.strip():
            log("    " + line)
    if failed:
        log(f"    job ended: {failed}")
    return rows


def _flag_works(flags: str, env: dict) -> bool:
    """An unknown XLA flag aborts the process: try it on a trivial program first."""
    probe = "import jax, jax.numpy as jnp; jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()"
    try:
        proc = subprocess.run([sys.executable, "-c", probe], env={**env, "XLA_FLAGS": flags}, capture_output=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def _pack(out_dir: str, log, limit: int = 15 << 20) -> None:
    """The raw traces and HLO texts, one .tar.gz per batch size; a tar over `limit` bytes keeps only
    its traces (the summaries are in the JSON either way)."""
    loose = sorted(n for n in os.listdir(out_dir) if n.startswith(("trace_", "hlo_")))
    for batch in sorted({n.split(".")[0].rsplit("_", 1)[-1] for n in loose}):
        names = [n for n in loose if n.split(".")[0].endswith(f"_{batch}")]
        for keep in (names, [n for n in names if n.startswith("trace_")], []):
            path = os.path.join(out_dir, f"profile_{batch}.tar.gz")
            with tarfile.open(path, "w:gz") as tar:
                for n in keep:
                    tar.add(os.path.join(out_dir, n), arcname=n)
            if os.path.getsize(path) <= limit:
                break
        if len(keep) < len(names):
            log(f"profile_{batch}.tar.gz: left out {sorted(set(names) - set(keep))} (over {limit >> 20} MiB)")
        for n in names:
            os.remove(os.path.join(out_dir, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=os.path.join("runs", "benchmarks", "gpu_resnet50"),
                        help="where the JSON, the log and the traces go (default: runs/benchmarks/gpu_resnet50)")
    parser.add_argument("--budget-s", type=float, default=520, help="start no job that would end after this")
    parser.add_argument("--variants", default="main,taps,taps+cmdbuf",
                        help=f"compared at 256 and 32 per device, the first as the baseline (known: {', '.join(VARIANTS)})")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--code", default="", help="code version to record (default: git describe)")
    parser.add_argument("--jobs", default=",".join(JOBS), help=f"which parts of the plan to run, in its order "
                        f"(default: all of {', '.join(JOBS)})")
    parser.add_argument("--chosen", default="", help="the variant the later jobs measure (default: the best of "
                        "this run's 'variants' job, else the first variant)")
    parser.add_argument("--tiny", action="store_true", help="resnet20 at 32x32, small batches: a CPU smoke run")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker), args.out_dir)
    variants = [v for v in args.variants.split(",") if v]
    jobs = [j for j in args.jobs.split(",") if j]
    for flag, given, known in (("--variants", variants + [args.chosen] * bool(args.chosen), VARIANTS),
                               ("--jobs", jobs, JOBS)):
        unknown = [v for v in given if v not in known]
        if unknown:
            sys.exit(f"gpu_resnet50.py: {flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")

    import jax

    if jax.default_backend() == "cpu" and not args.tiny:
        sys.exit("benchmarks/gpu_resnet50.py: needs a GPU (found cpu); on CPU try --tiny")
    os.makedirs(args.out_dir, exist_ok=True)
    t_start = time.time()
    log_path = os.path.join(args.out_dir, "log.txt")

    def log(line: str) -> None:
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    tiny = args.tiny
    if tiny:  # XLA's GPU options mean nothing on CPU: the smoke run checks the plan and the pool variants
        variants = [v for v in variants if not VARIANTS[v].get("compiler_options")] or ["main", "taps"]
    model, size = ("resnet20", 32) if tiny else ("resnet50", 224)
    big, small, mid, large = (16, 8, 4, 32) if tiny else (256, 32, 64, 512)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    flags = f"{env.get('XLA_FLAGS', '')} --xla_gpu_per_fusion_autotune_cache_dir={AUTOTUNE_CACHE}".strip()
    if not tiny and _flag_works(flags, env):
        env["XLA_FLAGS"] = flags
    doc = {"benchmark": "gpu_resnet50", "date": datetime.date.today().isoformat(),
           "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__, "backend": jax.default_backend(),
           "code": args.code or code_version(ROOT), "xla_flags": env.get("XLA_FLAGS", ""),
           "variants": {v: VARIANTS[v] for v in variants}, "model": model, "image_size": size, "dtype": "bfloat16",
           "steps_per_round": args.steps, "rounds": args.rounds,
           "protocol": "steps dispatched back to back, one sync per round; variants in one process, rounds "
                       "alternating; median step; speedups are medians of per-round ratios (95% bootstrap)",
           "rows": [], "skipped": [], "log": os.path.basename(log_path)}
    json_path = os.path.join(args.out_dir, "gpu_resnet50.json")
    log(f"{doc['device_kind']}, jax {doc['jax']}, XLA_FLAGS={doc['xla_flags']!r}")

    def save():
        doc["wall_s"] = time.time() - t_start
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=1)

    def run_job(label, cmd, estimate):
        left = args.budget_s - (time.time() - t_start)
        if left < estimate:
            log(f"skipped (budget: {left:.0f} s left, needs ~{estimate:.0f} s): {label}")
            doc["skipped"].append(label)
            return []
        log(f"[{time.time() - t_start:5.0f} s] {label}")
        rows = _run(cmd, env, left, log)
        doc["rows"].extend(rows)
        save()
        return rows

    def jax_job(variants_, batch, *, profile=False, noise=False, estimate=60.0):
        spec = {"variants": variants_, "batch": batch, "model": model, "image_size": size, "dtype": "bfloat16",
                "steps": 3 if tiny else args.steps, "rounds": 2 if tiny else args.rounds, "profile": profile,
                "profile_steps": 2 if tiny else 5, "noise": noise, "cache_dir": "/tmp/lars_jax_jit_cache"}
        label = f"lars_jax {'noise scale ' if noise else ''}{','.join(variants_)} at {batch}"
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec), "--out-dir", args.out_dir]
        return run_job(label, cmd, 15 if tiny else estimate)

    def torch_job(modes, batches, estimate):
        cmd = [sys.executable, os.path.join(HERE, "torch_resnet50.py"), "--modes", ",".join(modes),
               "--batches", ",".join(map(str, batches)), "--steps", str(3 if tiny else args.steps),
               "--rounds", str(2 if tiny else args.rounds), "--image-size", str(size)]
        return run_job(f"torch {','.join(modes)} at {batches}", cmd, 15 if tiny else estimate)

    by_batch = {}
    if "variants" in jobs:  # 1-2: the variants side by side, with profiles, at the headline batch and the paper's
        by_batch = {b: jax_job(variants, b, profile=True, estimate=80) for b in (big, small)}
    if "torch" in jobs:  # 3: the peer at the headline batch
        torch_job(["compile", "eager"], [big], estimate=100)
    # the variant kept: the largest geometric-mean speedup over both batches, same math (losses within 2%)
    score = {}
    for rows in by_batch.values():
        for r in rows:
            if "speedup_vs_baseline" in r and r["loss_rel_diff_vs_baseline"] <= 0.02:
                score.setdefault(r["variant"], []).append(r["speedup_vs_baseline"]["median"])
    chosen = args.chosen or max((v for v in score if len(score[v]) == len(by_batch)),
                                key=lambda v: statistics.geometric_mean(score[v]), default=variants[0])
    doc["chosen_variant"] = chosen
    log(f"chosen variant: {chosen}")
    if "headline" in jobs:  # the headline batch again beside the peer's run: baseline, an A/A copy, chosen
        jax_job(list(dict.fromkeys([variants[0], "main_again", chosen])), big, estimate=70)
    if "noise" in jobs:  # 5: the noise scale's cost
        jax_job([chosen], big, noise=True, estimate=60)
    if "batches" in jobs:  # 4: the other batches, baseline and chosen side by side
        for b in (small, mid, large):
            jax_job(list(dict.fromkeys([variants[0], chosen])), b, estimate=45)
    if "torch-batches" in jobs:  # 6: the peer at the other batches
        torch_job(["compile"], [small, large, mid], estimate=60)
    save()
    _pack(args.out_dir, log)
    log(table(doc))
    log(f"wrote {json_path} ({time.time() - t_start:.0f} s)")


def table(doc: dict) -> str:
    rows = [r for r in doc["rows"] if "images_per_second" in r]
    torch_compile = {r["per_device_batch"]: r["images_per_second"] for r in rows if r.get("mode") == "compile"}
    out = [f"{doc['device_kind']}, jax {doc['jax']}, {doc['model']} {doc['dtype']}, code {doc['code']}",
           f"{'batch':>5} {'what':<22} {'img/s':>8} {'step ms':>8} {'compile s':>9} {'x baseline [95%]':>21} "
           f"{'x torch.compile':>15} {'loss diff':>9}"]
    for r in sorted(rows, key=lambda r: (r["per_device_batch"], r["framework"] != "torch")):
        what = f"torch {r['mode']}" if r["framework"] == "torch" else f"lars_jax {r['variant']}"
        sp = r.get("speedup_vs_baseline")
        sp = f"{sp['median']:.3f} [{sp['ci95'][0]:.3f}, {sp['ci95'][1]:.3f}]" if sp else ""
        tc = torch_compile.get(r["per_device_batch"])
        tc = f"{r['images_per_second'] / tc:.3f}" if tc and r["framework"] == "lars_jax" else ""
        diff = f"{r['loss_rel_diff_vs_baseline']:.1e}" if "loss_rel_diff_vs_baseline" in r else ""
        out.append(f"{r['per_device_batch']:>5} {what:<22} {r['images_per_second']:8.0f} {r['step_ms']:8.2f} "
                   f"{r['compile_s']:9.1f} {sp:>21} {tc:>15} {diff:>9}")
    for r in doc["rows"]:
        if "noise_scale_overhead_rolled" in r:
            parts = [f"{loop} {100 * (r[f'noise_scale_overhead_{loop}']['median'] - 1):+.1f}%" for loop in ("rolled", "unrolled")]
            out.append(f"noise scale with 2 microbatches at {r['per_device_batch']} ({r['variant']}): "
                       f"{', '.join(parts)}; unrolled/rolled step {r['unrolled_vs_rolled_off']['median']:.3f}; "
                       f"ms {', '.join(f'{k} {v:.2f}' for k, v in r['step_ms'].items())}")
        if "error" in r:
            out.append(f"error in {r.get('framework')} {r.get('variant', r.get('mode'))} at "
                       f"{r.get('per_device_batch')}: {r['error'][:200]}")
    if doc["skipped"]:
        out.append("skipped (time budget): " + "; ".join(doc["skipped"]))
    return "\n".join(out)


if __name__ == "__main__":
    main()
