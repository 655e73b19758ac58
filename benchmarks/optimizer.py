"""Time one jitted optimizer update on ResNet-50's parameter tree (25,557,032 parameters, 161 tensors).

    .venv/bin/python benchmarks/optimizer.py [--repeats 30] [--out runs/benchmarks/optimizer_cpu.json]

Compares optax.sgd(momentum=0.9), optax.lars (ndim <= 1 masked) and lars_jax.optim.lars (paper
denominator), plus the lars_jax variants, side by side in one process: the update and
`apply_updates` in one jit with params and optimizer state donated. The methods take turns round
by round, in a fresh random order each round, so that machine noise hits all alike. In its turn
a method runs twice back to back: the second call is the steady-state time (the update running
step after step, as in training), the first the time right after another method's program ran
(which on this CPU slows the next program, most after optax.lars). Both medians are reported;
the ratios in the first columns use the steady-state times.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common_cli import default_out, write_json

from lars_jax import models, optim


def resnet50_params(seed: int = 0):
    model = models.create_model("resnet50", num_classes=1000)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape, dtype=np.float32)),
                        shapes["params"])


def methods():
    mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
    return {
        "optax.sgd": optax.sgd(0.1, momentum=0.9),
        "optax.lars": optax.lars(0.1, weight_decay=1e-4, weight_decay_mask=mask, trust_ratio_mask=mask,
                                 momentum=0.9),
        "lars_jax.lars": optim.lars(0.1, weight_decay=1e-4),
        "lars_jax.lars(optax denominator)": optim.lars(0.1, weight_decay=1e-4, denominator="optax"),
        "lars_jax.lamb": optim.lamb(0.1, weight_decay=1e-4),
    }


def make_step(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def _call(run_, grads) -> float:
    t0 = time.perf_counter()
    run_["params"], run_["state"] = run_["step"](run_["params"], run_["state"], grads)
    jax.block_until_ready(run_["params"])
    return time.perf_counter() - t0


def run(repeats: int = 30, seed: int = 0) -> list[dict]:
    """Times every method, prints the table, returns its rows."""
    params = resnet50_params()
    grads = jax.tree.map(lambda p: p * 0.01 + 0.001, params)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    runs = {}
    for name, tx in methods().items():
        step = make_step(tx)
        p = jax.tree.map(jnp.copy, params)
        s = tx.init(p)
        p, s = step(p, s, grads)  # compile + warm-up
        jax.block_until_ready(p)
        runs[name] = {"step": step, "params": p, "state": s, "steady": [], "after_switch": []}
    order = list(runs)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            runs[name]["after_switch"].append(_call(runs[name], grads))
            runs[name]["steady"].append(_call(runs[name], grads))

    median_ms = {name: {k: float(np.median(run_[k])) * 1e3 for k in ("steady", "after_switch")}
                 for name, run_ in runs.items()}
    sgd, optax_lars = median_ms["optax.sgd"], median_ms["optax.lars"]
    print(f"ResNet-50 parameter tree: {n_params:,} parameters in {len(jax.tree.leaves(params))} tensors; "
          f"{jax.devices()[0].device_kind}, median of {repeats}")
    print(f"{'method':34s} {'ms':>8s} {'x optax.sgd':>12s} {'x optax.lars':>13s} "
          f"{'after switch ms':>16s} {'x optax.sgd':>12s}")
    rows = []
    for name, ms in median_ms.items():
        row = {"method": name, "median_ms": ms["steady"], "ratio_to_sgd": ms["steady"] / sgd["steady"],
               "ratio_to_optax_lars": ms["steady"] / optax_lars["steady"],
               "after_switch_ms": ms["after_switch"],
               "after_switch_ratio_to_sgd": ms["after_switch"] / sgd["after_switch"]}
        rows.append(row)
        print(f"{name:34s} {row['median_ms']:8.2f} {row['ratio_to_sgd']:12.2f} {row['ratio_to_optax_lars']:13.2f} "
              f"{row['after_switch_ms']:16.2f} {row['after_switch_ratio_to_sgd']:12.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=default_out("optimizer_cpu.json"),
                        help="JSON file to write (default: %(default)s; '' writes none)")
    args = parser.parse_args()
    rows = run(args.repeats)
    result = {"rows": rows, "num_params": 25_557_032, "num_tensors": 161, "repeats": args.repeats,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "device": jax.devices()[0].device_kind, "jax": jax.__version__,
                          "cpu_count": os.cpu_count(), "load_average": os.getloadavg()},
              "date": time.strftime("%Y-%m-%d")}
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
