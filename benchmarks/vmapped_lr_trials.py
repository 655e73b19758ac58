"""A sweep's LR trials as one vmapped program, or one after another: which trains more images per second?

    .venv/bin/python benchmarks/vmapped_lr_trials.py [--batches 32 512] [--trials 3] [--rounds 3] [--steps N]
        [--out runs/benchmarks/vmapped_lr_trials_cpu.json]

The small CNN (BatchNorm groups of 32) with LARS, as in experiments/sweeps/fashion_mnist_cnn_regime.py,
where a batch's K LR trials share the seed, so the initial state and every batch: they differ only in
the peak LR. Timed side by side in one process: K jitted train steps (forward, backward, LARS update;
the sweep's microbatching and noise scale left out) run one after another, against one jit of
jax.vmap over the K states and LRs with the batch shared. Throughput is trial-images/s (K x batch per
round of steps); the two take turns, round by round, and the medians are reported. The same math:
after one step from the same states the vmapped parameters are compared with the sequential ones
(max difference relative to the tensor's largest entry). Batch 32 is a piece of the sweep's batch-256
cells, 512 of its larger ones.
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
from common_cli import code_version, default_out, write_json

from lars_jax import models, optim

LR_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0)  # the sweep's x{1/2, 1, 2}, and a 4th for --trials 4
PEAK_LR = 8.0  # fashion_mnist_cnn_regime.py's LARS LR at multiplier 1
WEIGHT_DECAY = 5e-4


def lars(lr):
    """The trial's optimizer: LARS at a constant LR (a traced scalar inside the step)."""
    return optim.lars(lambda count: lr, weight_decay=WEIGHT_DECAY)


def make_step(model):
    """(params, batch_stats, opt_state, lr, image, label) -> the same after one LARS step; `lr` is an
    argument (a traced scalar), so that jax.vmap can give each trial its own."""
    def step(params, stats, opt_state, lr, image, label):
        tx = lars(lr)

        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": stats}, image, train=True, mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean(), new["batch_stats"]

        grads, new_stats = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state
    return step


def initial_state(model, batch: int):
    variables = model.init(jax.random.key(0), jnp.zeros((batch, 28, 28, 1)), train=True)
    params = variables["params"]
    return params, variables["batch_stats"], lars(1.0).init(params)


def measure(batch: int, trials: int, rounds: int, steps: int) -> dict:
    model = models.create_model("small_cnn", num_classes=10, bn_group_size=32)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.standard_normal((batch, 28, 28, 1)), jnp.float32)
    label = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    lrs = jnp.asarray([PEAK_LR * m for m in LR_MULTIPLIERS[:trials]], jnp.float32)
    one = jax.jit(make_step(model), donate_argnums=(0, 1, 2))
    many = jax.jit(jax.vmap(make_step(model), in_axes=(0, 0, 0, 0, None, None)), donate_argnums=(0, 1, 2))
    sequential = [initial_state(model, batch) for _ in range(trials)]
    vmapped = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[initial_state(model, batch) for _ in range(trials)])

    def run_sequential(n):
        for _ in range(n):
            for k in range(trials):
                sequential[k] = one(*sequential[k], lrs[k], image, label)
        jax.block_until_ready(sequential)

    def run_vmapped(n):
        nonlocal vmapped
        for _ in range(n):
            vmapped = many(*vmapped, lrs, image, label)
        jax.block_until_ready(vmapped)

    times = {"sequential": [], "vmapped": []}
    runners = {"sequential": run_sequential, "vmapped": run_vmapped}
    for name in times:
        runners[name](1)  # compile
    # one step each from the same states: the same math gives the same params (compared here, since
    # later steps at these LRs on one repeated batch amplify float rounding chaotically)
    diff = max(float(jnp.max(jnp.abs(v[k] - s)) / (jnp.max(jnp.abs(s)) + 1e-12))
               for k in range(trials)
               for v, s in zip(jax.tree.leaves(vmapped[0]), jax.tree.leaves(sequential[k][0])))
    for _ in range(rounds):
        for name, run_ in runners.items():
            t0 = time.perf_counter()
            run_(steps)
            times[name].append(trials * batch * steps / (time.perf_counter() - t0))
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {"batch": batch, "trials": trials, "steps_per_round": steps, "rounds": rounds,
            "sequential_trial_images_per_s": median["sequential"], "vmapped_trial_images_per_s": median["vmapped"],
            "vmapped_over_sequential": median["vmapped"] / median["sequential"],
            "max_relative_param_difference_after_one_step": diff, "all_rounds_trial_images_per_s": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--trials", type=int, default=3, choices=range(2, len(LR_MULTIPLIERS) + 1))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default: 4,096 images' worth)")
    parser.add_argument("--out", default=default_out("vmapped_lr_trials_cpu.json"),
                        help="JSON file to write (default: %(default)s; '' writes none)")
    args = parser.parse_args()
    print(f"small CNN + LARS, {args.trials} LR trials, {jax.devices()[0].device_kind}; trial-images/s, "
          f"median of {args.rounds} rounds")
    print(f"{'batch':>6s} {'one after another':>18s} {'vmapped':>10s} {'vmapped / other':>16s} "
          f"{'max rel. diff, 1 step':>22s}")
    rows = []
    for b in args.batches:
        row = measure(b, args.trials, args.rounds, steps=args.steps or max(4, 4096 // b))
        rows.append(row)
        print(f"{b:6d} {row['sequential_trial_images_per_s']:18,.0f} {row['vmapped_trial_images_per_s']:10,.0f} "
              f"{row['vmapped_over_sequential']:16.2f} {row['max_relative_param_difference_after_one_step']:22.1e}",
              flush=True)
    result = {"rows": rows, "date": time.strftime("%Y-%m-%d"),
              "code_version": code_version(os.path.dirname(os.path.abspath(__file__))),
              "machine": {"platform": platform.platform(), "device": jax.devices()[0].device_kind,
                          "jax": jax.__version__, "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}}
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
