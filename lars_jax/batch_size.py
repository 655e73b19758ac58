"""How large can my batch be? `python -m lars_jax.batch_size --config experiments/X.py --workdir DIR`

Runs the first --steps steps of the config at a small batch (--batch_size; default the config's
own) with the gradient noise scale on, reads B_simple = tr(Sigma) / |G|^2 (in examples,
lars_jax.noise_scale) averaged over the last 20% of those steps with its 95% interval
(lars_jax.reporting.NoiseScaleTail), and predicts for each optimizer of the calibration sweep the
largest batch whose validation accuracy stays within 1 point of the small batch's, as

    B_max = B_simple x (largest batch within 1 point) / (B_simple measured the same way),

the factor taken from a sweep that ran every batch with the same epochs and enough updates
(CALIBRATION, made by benchmarks/calibrate_batch_size.py). Writes DIR/batch_size.json. The run is
an ordinary lars_jax.main run of the changed config in DIR (TensorBoard curves, a checkpoint of its
last step, the workdir lock); the same command again reads it back without training.

Limits (docs/noise-scale.md): the factor comes from one network on one dataset; B_simple grows as
training goes on, so it is read at the same point (the first --steps steps) as in the calibration;
with BatchNorm it is measured with the run's group size, and another group size changes it.
"""
from __future__ import annotations

import os
import sys

import ml_collections
from absl import app, flags, logging

from lars_jax import main as cli
from lars_jax.errors import ConfigError, EXIT_USAGE

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 500, "Train steps of the measuring run; B_simple is read over the last 20% of them.")
flags.DEFINE_integer("batch_size", None, "Global batch of the measuring run (default: the config's).")

OUTPUT = "batch_size.json"
MAX_PIECES = 8  # microbatches the measuring run cuts a device's batch into when it has one device

# From benchmarks/results/batch_size_calibration.json (benchmarks/calibrate_batch_size.py): the
# sweep experiments/sweeps/fashion_mnist_regime.py (benchmarks/results/sweep_fashion_mnist_regime),
# B_simple measured by this command (--steps 500) on each optimizer's batch-256 run at its chosen LR.
CALIBRATION = {
    "sweep": "fashion_mnist_regime",
    "steps": 500,
    "optimizers": {
        "sgd_goyal": {
            "label": "SGD + linear scaling + warmup", "largest_within_1_point": 4096,
            "first_batch_over_1_point": 8192, "lr_multiplier": 1.0,
            "b_simple": 616.369689266182,
            "b_simple_interval": [504.85307554736283, 727.8863029850016]},
        "lars": {
            "label": "LARS", "largest_within_1_point": 8192,
            "first_batch_over_1_point": None, "lr_multiplier": 1.0,
            "b_simple": 206.70358306589054,
            "b_simple_interval": [179.03560049013566, 234.37156564164553]},
        "nesterov": {
            "label": "Nesterov", "largest_within_1_point": 8192,
            "first_batch_over_1_point": None, "lr_multiplier": 2.0,
            "b_simple": 577.6786585979091,
            "b_simple_interval": [478.39709423639, 676.9602229594283]},
    },
}


def measuring_config(config: ml_collections.ConfigDict, *, steps: int, batch_size: int | None,
                     num_devices: int) -> tuple[ml_collections.ConfigDict, str]:
    """The config of the measuring run, and a note of what was changed beyond steps and batch.

    Its first `steps` steps at `batch_size`, the noise scale on (decay 0.99 unless set), one
    evaluation and one checkpoint at the end. On one data-parallel device without microbatches
    the step has one batch size, so the batch is cut into up to MAX_PIECES microbatches of whole
    BatchNorm groups (the same math); with no group size set, the group becomes the piece."""
    from lars_jax import configs

    if steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    c = ml_collections.ConfigDict(config.to_dict())
    if batch_size is not None:
        if batch_size < 2:
            raise ConfigError(f"--batch_size: must be >= 2 (the noise scale compares two batch sizes), got {batch_size}")
        c.global_batch_size = batch_size
    c.loop.stop_after_steps = steps
    c.loop.eval_every = c.loop.checkpoint_every = steps
    if c.loop.noise_scale_decay is None:
        c.loop.noise_scale_decay = 0.99
    workers = num_devices // c.mesh.model
    note = ""
    if workers == 1 and c.mesh.microbatches == 1:
        local, group = c.global_batch_size, c.model.get("bn_group_size")
        # pieces of whole groups; with no group set, of >= 2 examples (a BatchNorm group of one is degenerate)
        fits = [k for k in range(MAX_PIECES, 1, -1)
                if local % k == 0 and (local // k % group == 0 if group else local // k >= 2)]
        if not fits:
            need = 2 * (group or 2)
            raise ConfigError(
                f"global_batch_size: one device and a batch of {local} examples"
                + (f" in BatchNorm groups of {group}" if group else "")
                + f" cannot be cut into 2 or more pieces to measure the noise scale; pass --batch_size with a "
                  f"multiple of {need} (e.g. {max(need, local // need * need)}), or run on several devices")
        c.mesh.microbatches = fits[0]
        if group is None:
            c.model.bn_group_size = local // fits[0]
            note = f"BatchNorm groups of {local // fits[0]} examples, where the config's group is the whole batch"
    configs.validate(c, num_devices=num_devices)
    return c, note


def family(config) -> str:
    """The calibration row a config's optimizer is measured against: "lars", "nesterov" or
    "sgd_goyal" (SGD with momentum, and any other optimizer: the note says so)."""
    name = config.optimizer.name
    if name == "lars":
        return "lars"
    return "nesterov" if name == "sgd" and config.optimizer.sgd.nesterov else "sgd_goyal"


def predict(b_simple: float, interval: list | None, measured_with: str, calibration: dict = CALIBRATION) -> dict:
    """{optimizer: {label, batch, low, high, at_least}} for every optimizer of the calibration:

        batch = b_simple x largest_within_1_point[optimizer] / calibrated b_simple[measured_with],

    the calibrated B_simple being the one measured the same way on `measured_with`'s run (B_simple
    depends on the trajectory: LARS's run reads lower than SGD's at the same batch). low/high
    combine both 95% intervals and the sweep's grid: the first batch that lost more than a point
    bounds it from above; where none did, `at_least` is True and high None."""
    lo, hi = interval or (None, None)
    ref = calibration["optimizers"][measured_with]
    ref_b, (ref_lo, ref_hi) = ref["b_simple"], ref["b_simple_interval"]
    out = {}
    for name, cal in calibration["optimizers"].items():
        largest, failing = cal["largest_within_1_point"], cal["first_batch_over_1_point"]
        out[name] = {
            "label": cal["label"], "batch": b_simple * largest / ref_b,
            "low": None if lo is None or ref_hi is None else lo * largest / ref_hi,
            "high": None if failing is None or hi is None or not ref_lo else hi * failing / ref_lo,
            "at_least": failing is None}
    return out


def _num(x) -> str:
    return "?" if x is None else f"{x:,.0f}"


def report(measured: dict, batch: int, steps: int, note: str, measured_with: str) -> tuple[dict, list[str]]:
    """The JSON document and the console lines for a measuring run's results["noise_scale"]."""
    b, interval = measured.get("b_simple"), measured.get("b_simple_interval")
    doc = {"global_batch_size": batch, "steps": steps, "read_from_step": measured.get("from_step"),
           "b_simple": b, "b_simple_interval": interval, "note": note, "measured_with": measured_with,
           "calibration": CALIBRATION}
    lines = [f"B_simple over steps {measured.get('from_step')}-{steps} at batch {batch:,}: "
             + (f"{_num(b)} examples (95% interval {_num(interval[0])} to "
                f"{'unbounded' if interval[1] is None else _num(interval[1])})" if b is not None and interval
                else "not measurable: the averaged |G|^2 estimate is <= 0 (noise dominates at this batch; "
                     "try a larger --batch_size or more --steps)")]
    if note:
        lines.append(f"Measured with {note}.")
    if steps != CALIBRATION["steps"]:
        lines.append(f"Not calibrated for this reading: the calibration read B_simple over steps "
                     f"{CALIBRATION['steps'] * 4 // 5 + 1}-{CALIBRATION['steps']} (--steps {CALIBRATION['steps']}), "
                     f"where it is lower or higher than here; the predictions below are off by that ratio.")
    if b is not None:
        doc["predicted_largest_batch"] = predict(b, interval, measured_with)
        lines.append(f"Largest batch within 1 point of the small batch's accuracy, by optimizer (calibrated on "
                     f"the {CALIBRATION['sweep']} sweep against its {CALIBRATION['optimizers'][measured_with]['label']} "
                     f"run, docs/noise-scale.md):")
        for p in doc["predicted_largest_batch"].values():
            high = "unbounded" if p["high"] is None else _num(p["high"])
            lines.append(f"  {p['label']:<32} {'>= ' if p['at_least'] else ''}{_num(p['batch'])}"
                         f"  (range {_num(p['low'])} to {high})")
    return doc, lines


def main(argv):
    if len(argv) > 1:
        cli._fail(f"unexpected arguments {argv[1:]}: every option is a --flag (--helpfull lists them)", EXIT_USAGE)
    import jax

    from lars_jax import data, train

    try:
        config, note = measuring_config(FLAGS.config, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
                                        num_devices=jax.device_count())
        whole = train.batch_plan(config, data.get_info(config.data).num_train).total_steps
    except ConfigError as e:
        cli._fail(" ".join(str(e).split()), e.exit_code)
    if whole < FLAGS.steps:
        cli._fail(f"--steps {FLAGS.steps}: the config's whole run at batch {config.global_batch_size} is {whole} "
                  f"steps; pass --steps <= {whole}", EXIT_USAGE)
    if FLAGS.steps < 10 * 5:  # the tail's 10 blocks need >= 1 step each: 20% of 50 steps
        logging.warning("--steps %d: B_simple is read over %d steps; its interval needs >= 50 steps",
                        FLAGS.steps, -(-FLAGS.steps // 5))
    results = cli.train_with_flags(config)
    if results.get("preempted"):
        return results.get("exit_code", 0)
    if results.get("final_step") != FLAGS.steps:
        cli._fail(f"--workdir {FLAGS.workdir}: holds a run that stopped at step {results.get('final_step')}, not "
                  f"--steps {FLAGS.steps}; use a new --workdir", EXIT_USAGE)
    measured = results.get("noise_scale")
    if not isinstance(measured, dict):
        cli._fail("the run measured no noise scale (config.loop.noise_scale_decay, mesh.microbatches)", 1)
    doc, lines = report(measured, config.global_batch_size, FLAGS.steps, note, family(config))
    path = os.path.join(FLAGS.workdir, OUTPUT)
    if jax.process_index() == 0:
        from lars_jax import workdir
        workdir.write_json(path, doc)
    print("\n".join(lines + [f"wrote {path}"]), flush=True)
    return 0


def run() -> None:
    app.run(main, flags_parser=cli._parse)


if __name__ == "__main__":
    sys.exit(run())
