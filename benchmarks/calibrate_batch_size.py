"""Calibrates `python -m lars_jax.batch_size` on a regime-matched sweep and checks it on a held-out one.

.venv/bin/python benchmarks/calibrate_batch_size.py --workdir runs/calibrate_batch_size \
    --out benchmarks/results/batch_size_calibration.json

For each optimizer of the calibration sweep (default experiments/sweeps/fashion_mnist_regime.py,
results in benchmarks/results/sweep_fashion_mnist_regime): the command's measuring run
(lars_jax.batch_size.measuring_config, --steps as the command's default) on the sweep's
smallest-batch config at the LR the sweep chose there, its B_simple and interval, and from the
sweep's validation accuracies the largest batch within 1 point and the first batch beyond it.
Then the held-out check: the same measurement on the held-out sweep's smallest-batch configs, the
prediction from the calibration alone, the batches that sweep observed and how far outside them
each prediction lies (`factor_off`; the check asks for within 2x). Copy the printed
"optimizers" into lars_jax.batch_size.CALIBRATION (tests/test_batch_size.py checks they agree).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def _num(x) -> str:
    return "none" if x is None else f"{x:,.0f}"


def _interval(pair) -> str:
    return "?" if not pair else f"{_num(pair[0])} to {'unbounded' if pair[1] is None else _num(pair[1])}"


def observed(sweep, results: dict) -> dict:
    """{optimizer: (smallest-batch row, largest batch within 1 point, first batch beyond)}."""
    from lars_jax.sweep.critical_batch import knee, largest_within

    out = {}
    for opt in sweep.optimizer_order:
        rows = sorted((r for r in results["summary"] if r["optimizer"] == opt), key=lambda r: r["batch_size"])
        if rows:
            out[opt] = (rows[0], largest_within(rows), knee(rows))
    return out


def factor_off(predicted: float, at_least: bool, largest: int, first_over: int | None) -> float:
    """How far a prediction lies outside the observed bracket [largest within 1 point, first batch
    beyond): 1.0 inside it (the grid cannot say more), else the ratio to the nearer end. A lower
    bound ("at least") can only miss high."""
    if first_over is not None and predicted >= first_over:
        return predicted / first_over
    if predicted < largest and not at_least:
        return largest / predicted
    return 1.0


def measure(sweep, row: dict, workdir: str, steps: int) -> dict:
    import jax
    from lars_jax import batch_size, data, train
    from lars_jax.sweep.cells import cell_config

    num_train = data.get_info(sweep.base.data).num_train
    config = cell_config(sweep, row["optimizer"], row["batch_size"], row["lr_multiplier"], sweep.seeds[0], num_train)
    config, note = batch_size.measuring_config(config, steps=steps, batch_size=None, num_devices=jax.device_count())
    ns = train.train_and_evaluate(config, os.path.join(workdir, f"{sweep.name}_{row['optimizer']}"))["noise_scale"]
    return {"b_simple": ns["b_simple"], "b_simple_interval": ns["b_simple_interval"], "from_step": ns["from_step"],
            "batch": row["batch_size"], "lr_multiplier": row["lr_multiplier"], "note": note}


def main(argv=None) -> int:
    from common_cli import code_version, default_out, write_json
    from lars_jax import batch_size, configs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default="experiments/sweeps/fashion_mnist_regime.py")
    p.add_argument("--results", default="benchmarks/results/sweep_fashion_mnist_regime")
    p.add_argument("--held_out_sweep", default="experiments/sweeps/fashion_mnist_cnn_regime.py")
    p.add_argument("--held_out_results", default="benchmarks/results/sweep_fashion_mnist_cnn_regime")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--workdir", default=os.path.join("runs", "calibrate_batch_size"),
                   help="one measuring run per optimizer and sweep in a subdirectory (rerun: read back)")
    p.add_argument("--out", default=default_out("batch_size_calibration.json"),
                   help="JSON file to write (default: %(default)s; recording takes an explicit "
                        "--out benchmarks/results/batch_size_calibration.json)")
    args = p.parse_args(argv)

    def load(sweep_path, results_dir):
        with open(os.path.join(results_dir, "results.json")) as f:
            return configs.load_config(sweep_path), json.load(f)

    sweep, results = load(args.sweep, args.results)
    calibration = {"sweep": sweep.name, "steps": args.steps, "optimizers": {}}
    for opt, (row, largest, failing) in observed(sweep, results).items():
        m = measure(sweep, row, args.workdir, args.steps)
        calibration["optimizers"][opt] = {"label": row["label"], "largest_within_1_point": largest,
                                          "first_batch_over_1_point": failing, **m}
        print(f"{row['label']:<32} B_simple {_num(m['b_simple'])} (95%: {_interval(m['b_simple_interval'])})  "
              f"largest within 1 point {largest:,}, first beyond {_num(failing)}", flush=True)
        if m["b_simple"] is None or not m["b_simple_interval"]:
            sys.exit(f"error: {opt}: B_simple not measurable in {args.steps} steps; pass more --steps")
    held_sweep, held = load(args.held_out_sweep, args.held_out_results)
    check = {}
    for opt, (row, largest, failing) in observed(held_sweep, held).items():
        m = measure(held_sweep, row, args.workdir, args.steps)
        pred = (batch_size.predict(m["b_simple"], m["b_simple_interval"], opt, calibration)
                if m["b_simple"] is not None and opt in calibration["optimizers"] else {})
        own = pred.get(opt, {})
        off = factor_off(own["batch"], own["at_least"], largest, failing) if own else None
        check[opt] = {"measured": m, "observed_largest_within_1_point": largest, "observed_first_over": failing,
                      "predicted": pred, "factor_off": off, "within_2x": off is not None and off <= 2.0}
        print(f"held out {held_sweep.name} {row['label']:<32} B_simple {_num(m['b_simple'])}  predicted "
              f"{'>= ' if own.get('at_least') else ''}{_num(own.get('batch'))} "
              f"(range {_interval([own.get('low'), own.get('high')])})  observed: within 1 point up to "
              f"{largest:,}, first beyond {_num(failing)}; off by {'?' if off is None else f'{off:.2f}x'}", flush=True)
    doc = {"calibration": calibration, "held_out": {"sweep": held_sweep.name, "check": check},
           "code_version": code_version(ROOT), "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
