"""`python -m lars_jax.batch_size`: the measuring run's config, the prediction, the calibration it
carries, and the command as a user runs it."""
import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, environment, small_config
from lars_jax import batch_size
from lars_jax.errors import ConfigError


def test_measuring_config_cuts_one_devices_batch_into_whole_batchnorm_groups():
    c, note = batch_size.measuring_config(small_config(global_batch_size=256, model__bn_group_size=32), steps=40,
                                          batch_size=None, num_devices=1)
    assert (c.mesh.microbatches, c.model.bn_group_size, note) == (8, 32, "")
    assert (c.loop.stop_after_steps, c.loop.eval_every, c.loop.checkpoint_every) == (40, 40, 40)
    c, note = batch_size.measuring_config(small_config(loop__noise_scale_decay=None), steps=40, batch_size=96,
                                          num_devices=1)
    assert (c.global_batch_size, c.mesh.microbatches, c.model.bn_group_size) == (96, 8, 12)
    assert "groups of 12" in note and c.loop.noise_scale_decay == 0.99
    c, _ = batch_size.measuring_config(small_config(global_batch_size=96, model__bn_group_size=16), steps=40,
                                       batch_size=None, num_devices=1)
    assert c.mesh.microbatches == 6  # 8 pieces of 12 would split the groups of 16
    c, note = batch_size.measuring_config(small_config(), steps=40, batch_size=None, num_devices=4)
    assert (c.mesh.microbatches, c.model.bn_group_size, note) == (1, None, "")  # 4 devices: two batch sizes already
    for config, batch, field, fix in ((small_config(), 7, "global_batch_size", "multiple of 4"),
                                      (small_config(model__bn_group_size=32), 32, "global_batch_size", "multiple of 64"),
                                      (small_config(), 1, "--batch_size", ">= 2")):
        with pytest.raises(ConfigError) as e:
            batch_size.measuring_config(config, steps=40, batch_size=batch, num_devices=1)
        assert str(e.value).startswith(field) and fix in str(e.value), str(e.value)
    with pytest.raises(ConfigError, match="^--steps"):
        batch_size.measuring_config(small_config(), steps=0, batch_size=None, num_devices=1)


CALIBRATION = {"sweep": "s", "steps": 500, "optimizers": {
    "a": {"label": "A", "largest_within_1_point": 4096, "first_batch_over_1_point": 8192, "b_simple": 600.0,
          "b_simple_interval": [500.0, 700.0]},
    "b": {"label": "B", "largest_within_1_point": 8192, "first_batch_over_1_point": None, "b_simple": 200.0,
          "b_simple_interval": [150.0, 250.0]}}}


def test_prediction_scales_each_optimizers_largest_batch_by_the_measured_over_the_calibrated_b_simple():
    p = batch_size.predict(300.0, [250.0, 350.0], "a", CALIBRATION)
    assert p["a"] == pytest.approx({"label": "A", "batch": 2048.0, "low": 250 * 4096 / 700, "high": 350 * 8192 / 500,
                                    "at_least": False})
    assert p["b"] == {"label": "B", "batch": 4096.0, "low": pytest.approx(250 * 8192 / 700), "high": None,
                      "at_least": True}
    assert batch_size.predict(100.0, [80.0, None], "b", CALIBRATION)["a"]["high"] is None  # unbounded measurement


def test_family_picks_the_calibration_row_of_the_configs_optimizer():
    assert batch_size.family(small_config()) == "lars"
    assert batch_size.family(small_config(optimizer__name="sgd")) == "sgd_goyal"
    assert batch_size.family(small_config(optimizer__name="sgd", optimizer__sgd__nesterov=True)) == "nesterov"


def test_the_calibration_is_the_recorded_one_and_agrees_with_the_sweep():
    from lars_jax import configs
    from lars_jax.sweep.critical_batch import knee, largest_within

    recorded = json.load(open(os.path.join(ROOT, "benchmarks", "results", "batch_size_calibration.json")))["calibration"]
    assert {k: recorded[k] for k in ("sweep", "steps")} == {k: batch_size.CALIBRATION[k] for k in ("sweep", "steps")}
    sweep = json.load(open(os.path.join(ROOT, "benchmarks", "results", "sweep_fashion_mnist_regime", "results.json")))
    assert sweep["sweep"] == batch_size.CALIBRATION["sweep"]
    for name, cal in batch_size.CALIBRATION["optimizers"].items():
        assert cal == {k: recorded["optimizers"][name][k] for k in cal}
        rows = [r for r in sweep["summary"] if r["optimizer"] == name]
        assert (cal["largest_within_1_point"], cal["first_batch_over_1_point"]) == (largest_within(rows), knee(rows))
        smallest = min(rows, key=lambda r: r["batch_size"])
        assert cal["lr_multiplier"] == smallest["lr_multiplier"]  # measured at the LR the sweep chose there
    assert configs.load_config(os.path.join(ROOT, "experiments", "sweeps", "fashion_mnist_regime.py")).name == \
        batch_size.CALIBRATION["sweep"]


def _command(workdir, *extra):
    return [sys.executable, "-m", "lars_jax.batch_size", "--config", os.path.join(ROOT, "experiments", "fashion_mnist.py"),
            "--workdir", str(workdir), "--config.model.name=mlp", "--config.data.augment=False", *extra]


@pytest.mark.slow  # a short training run in a subprocess
def test_the_command_measures_predicts_writes_json_and_reads_it_back(tmp_path):
    env = environment(1)
    args = ("--steps", "50", "--batch_size", "128", "--config.loop.eval_batch_size=2000")
    proc = subprocess.run(_command(tmp_path / "w", *args), capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.load(open(tmp_path / "w" / batch_size.OUTPUT))
    assert doc["global_batch_size"] == 128 and doc["measured_with"] == "lars" and doc["read_from_step"] == 41
    low, high = doc["b_simple_interval"]
    assert doc["b_simple"] > 0 and low <= doc["b_simple"] and (high is None or doc["b_simple"] <= high)
    assert set(doc["predicted_largest_batch"]) == set(batch_size.CALIBRATION["optimizers"])
    assert "B_simple over steps 41-50 at batch 128" in proc.stdout and "LARS" in proc.stdout
    assert f"{doc['predicted_largest_batch']['lars']['batch']:,.0f}" in proc.stdout
    again = subprocess.run(_command(tmp_path / "w", *args), capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=300)  # the finished run is read back, not trained again
    assert again.returncode == 0 and json.load(open(tmp_path / "w" / batch_size.OUTPUT)) == doc
    for extra, needle in ((("--steps", "0"), "--steps"), (("--batch_size", "1"), "--batch_size"),
                          (("--steps", "100000", "--batch_size", "128"), "--steps <= ")):
        bad = subprocess.run(_command(tmp_path / "bad", *extra), capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=300)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
        assert bad.stderr.strip().splitlines()[-1].startswith("error: " + needle.split()[0]), bad.stderr
        assert needle in bad.stderr and not os.path.exists(tmp_path / "bad" / "results.json")


def test_how_far_off_a_held_out_prediction_is():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from calibrate_batch_size import factor_off

    # observed: within 1 point up to 1,024, 2,048 the first batch beyond
    assert factor_off(1500.0, False, 1024, 2048) == 1.0  # inside the bracket: the grid says no more
    assert factor_off(6144.0, False, 1024, 2048) == pytest.approx(3.0)  # 3x above the first failing batch
    assert factor_off(256.0, False, 1024, 2048) == pytest.approx(4.0)  # 4x below the largest that held
    assert factor_off(256.0, True, 1024, 2048) == 1.0  # ">= 256" is true, if weak
    assert factor_off(4096.0, True, 1024, 2048) == pytest.approx(2.0)  # ">= 4,096" is 2x too high
    assert factor_off(9000.0, False, 2048, None) == 1.0  # nothing failed: anything above 2,048 may hold
    assert factor_off(512.0, False, 2048, None) == pytest.approx(4.0)


@pytest.mark.slow  # six short training runs
def test_the_calibration_script_runs_and_records_what_the_command_uses(tmp_path):
    """benchmarks/calibrate_batch_size.py end to end at 20 steps, the MLP sweep as its own held-out
    sweep (the CNN's runs take minutes): the calibration it writes is what predict() reads."""
    regime = ("experiments/sweeps/fashion_mnist_regime.py", "benchmarks/results/sweep_fashion_mnist_regime")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "calibrate_batch_size.py"),
                           "--steps", "20", "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "c.json"),
                           "--held_out_sweep", regime[0], "--held_out_results", regime[1]],
                          capture_output=True, text=True, cwd=ROOT, env=environment(1), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.load(open(tmp_path / "c.json"))
    cal = doc["calibration"]
    assert cal["steps"] == 20 and set(cal["optimizers"]) == set(batch_size.CALIBRATION["optimizers"])
    for name, check in doc["held_out"]["check"].items():  # the same runs, read back: each predicts its own sweep
        m = check["measured"]
        assert m["b_simple"] == cal["optimizers"][name]["b_simple"]
        assert check["predicted"][name]["batch"] == pytest.approx(cal["optimizers"][name]["largest_within_1_point"])
