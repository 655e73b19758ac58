"""lars_jax.sweep: the grid it plans, and a --quick run of the real command end to end."""
import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import mounted_tmpfs
from lars_jax import configs, sweep, train
from lars_jax.errors import EXIT_USAGE, NonFiniteLossError
from lars_jax.sweep import critical_batch  # noqa: F401 - sweep.critical_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_CONFIG = os.path.join(ROOT, "experiments", "sweeps", "fashion_mnist_batch.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_sweep():
    return configs.load_config(SWEEP_CONFIG)


def test_default_grid_is_the_one_the_issue_asks_for():
    s = load_sweep()
    assert min(s.batch_sizes) <= 256 and max(s.batch_sizes) >= 16384
    assert set(s.optimizer_order) == {"sgd_goyal", "lars", "nesterov"}
    goyal = s.optimizers.sgd_goyal
    assert goyal.overrides.optimizer.name == "sgd" and goyal.overrides.schedule.lr_scaling == "linear"
    assert list(goyal.lr_multipliers) == [1.0]  # the rule alone, untuned
    nesterov = sweep.optimizer_config(s, "nesterov").optimizer
    assert len(s.optimizers.nesterov.lr_multipliers) >= 3 and nesterov.name == "sgd" and nesterov.sgd.nesterov
    assert not sweep.optimizer_config(s, "sgd_goyal").optimizer.sgd.nesterov
    assert s.optimizers.lars.overrides.optimizer.name == "lars"
    assert len(s.seeds) + len(s.extra_seeds) >= 2  # >= 2 seeds at the smallest and largest batch
    assert s.base.schedule.warmup_epochs > 0
    # Every cell trains the same model for the same number of epochs.
    cells = [sweep.cell_config(s, o, b, m, 0, 60000) for o, b in sweep.plan(s)
             for m in s.optimizers[o].lr_multipliers]
    assert len({(c.model.name, c.schedule.num_epochs, c.schedule.total_steps, c.data.name) for c in cells}) == 1
    assert all(c.global_batch_size % c.model.bn_group_size == 0 for c in cells)


def peak_learning_rate(config) -> float:
    return train.batch_plan(config, num_train=60000).peak_learning_rate


def test_cell_config_scales_the_learning_rate_by_the_stated_rule():
    s = load_sweep()
    big = sweep.cell_config(s, "sgd_goyal", 16384, 1.0, 0, 60000)
    assert big.global_batch_size == 16384
    assert peak_learning_rate(big) == pytest.approx(0.1 * 16384 / 256)  # Goyal et al.: 0.1 x B / 256
    half = sweep.cell_config(s, "sgd_goyal", 16384, 0.5, 1, 60000)
    assert peak_learning_rate(half) == pytest.approx(0.5 * peak_learning_rate(big))
    assert half.seed == 1
    a = sweep.Cell("sgd_goyal", 16384, 1.0, 0, big)
    b = sweep.Cell("sgd_goyal", 16384, 0.5, 1, half)
    assert a.name != b.name and a.name.startswith("sgd_goyal_b16384_lrx1_s0_")
    # Eval/checkpoint cadence: checkpoints only at the end; ~log_points logged points.
    spe = 60000 // 16384
    total = round(big.schedule.num_epochs * spe)
    assert big.loop.log_every == max(1, total // s.log_points) and big.loop.checkpoint_every > total


def test_cells_keep_the_math_and_cut_big_batches_into_pieces():
    """The CNN sweep: batch 256 in 8 pieces of one BN group (the noise scale), batches above 512
    in pieces of 512, BN groups of 32 everywhere, and every piece a whole number of groups."""
    s = configs.load_config(os.path.join(ROOT, "experiments", "sweeps", "fashion_mnist_cnn_batch.py"))
    pieces = {b: sweep.cell_config(s, "lars", b, 1.0, 0, 50000).mesh.microbatches for b in (256, 512, 4096, 16384)}
    assert pieces == {256: 8, 512: 1, 4096: 8, 16384: 32}
    for b, k in pieces.items():
        c = sweep.cell_config(s, "lars", b, 1.0, 0, 50000)
        assert c.model.bn_group_size == 32 and (b // k) % 32 == 0, b
    assert sweep.cell_config(load_sweep(), "lars", 16384, 1.0, 0, 50000).mesh.microbatches == 1  # the MLP's: whole


@pytest.mark.parametrize("name, out", [("fashion_mnist_regime", "sweep_fashion_mnist_regime"),
                                       ("fashion_mnist_cnn_regime", "sweep_fashion_mnist_cnn_regime")])
def test_the_regime_sweeps_give_the_largest_batch_300_updates_and_match_their_recorded_results(name, out):
    """The paper's regime (issue 23): the same epochs at every batch, >= 300 updates at the largest,
    2 seeds at 256 and the largest; the results the docs quote were made by this config."""
    from lars_jax import batching

    s = configs.load_config(os.path.join(ROOT, "experiments", "sweeps", f"{name}.py"))
    num_train = 50000  # 60,000 minus the 10,000 validation images
    assert s.base.data.validation_examples == 10000
    largest = max(s.batch_sizes)
    steps = batching.schedule_steps(batching.steps_per_epoch(num_train, largest), num_epochs=s.base.schedule.num_epochs)
    assert steps >= 300 and min(s.batch_sizes) == 256 and len(s.batch_sizes) >= 3
    assert sweep.extra_seed_batches(s) == {256, largest} and len(s.seeds) + len(s.extra_seeds) >= 2
    recorded = json.load(open(os.path.join(ROOT, "benchmarks", "results", out, "results.json")))
    assert recorded["sweep"] == s.name and recorded["batch_sizes"] == sorted(s.batch_sizes)
    assert recorded["base_config"]["schedule"]["num_epochs"] == s.base.schedule.num_epochs
    assert {r["batch_size"]: r["total_steps"] for r in recorded["summary"] if r["optimizer"] == "lars"}[largest] == steps


def test_apply_quick_merges_nested_overrides_without_touching_the_original():
    s = load_sweep()
    q = sweep.apply_quick(s)
    assert q.base.schedule.total_steps == s.quick["base"]["schedule"]["total_steps"]
    assert s.base.schedule.total_steps is None
    assert list(q.batch_sizes) == list(s.quick["batch_sizes"])
    assert q.name.endswith("_quick") and q.base.model.name == s.base.model.name
    assert q.base.schedule.num_epochs == s.base.schedule.num_epochs  # a merge, not a replacement


def test_a_diverged_cell_is_recorded_and_skipped_on_rerun(tmp_path, monkeypatch):
    from lars_jax import train
    calls = []

    def diverge(config, workdir):
        calls.append(workdir)
        os.makedirs(workdir, exist_ok=True)
        raise NonFiniteLossError("loss is nan at step 3: training diverged; no checkpoint was written yet.")

    monkeypatch.setattr(train, "train_and_evaluate", diverge)
    s = load_sweep()
    cell = sweep.Cell("sgd_goyal", 16384, 1.0, 0, sweep.cell_config(s, "sgd_goyal", 16384, 1.0, 0, 60000))
    rec = sweep.run_cell(cell, str(tmp_path), 60000)
    assert rec["status"] == "diverged" and rec["test_accuracy"] is None and not rec["skipped"]
    assert "diverged" in rec["message"]
    again = sweep.run_cell(cell, str(tmp_path), 60000)
    assert again["skipped"] and again["status"] == "diverged" and len(calls) == 1
    # The summary and table report it as diverged, not as an accuracy.
    summary = sweep.summarise(s, [rec])
    assert summary[0]["mean_accuracy"] is None and summary[0]["diverged"] == 1
    assert "diverged" in sweep.markdown(s, summary, [rec], {"description": "", "cell_seconds": 0,
                                                            "sweep_seconds": 0, "machine": "test"})


@pytest.fixture
def sweep_calls(monkeypatch):
    """main()'s calls of run_sweep, recorded instead of run: (sweep name, workdir, out)."""
    calls = []
    monkeypatch.setattr("lars_jax.sweep.cli.run_sweep",
                        lambda s, workdir, out, log: calls.append((s.name, workdir, out)))
    return calls


def test_main_parses_its_flags_afresh_on_a_second_call_in_one_process(tmp_path, sweep_calls):
    assert sweep.main(["sweep", "--config", SWEEP_CONFIG, "--workdir", str(tmp_path / "a")]) == 0
    assert sweep.main(["sweep", "--config", SWEEP_CONFIG, "--workdir", str(tmp_path / "b"), "--quick",
                       "--out", str(tmp_path / "b_out")]) == 0
    assert sweep_calls == [("fashion_mnist_batch", str(tmp_path / "a"), None),
                           ("fashion_mnist_batch_quick", str(tmp_path / "b"), str(tmp_path / "b_out"))]


def one_line_exit(capsys, argv, code=EXIT_USAGE) -> str:
    """sweep.main(argv)'s one `error: ` line on stderr, after it exited with `code`."""
    with pytest.raises(SystemExit) as exit_:
        sweep.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err[len("error: "):].strip()


def test_quick_refuses_an_out_holding_the_recorded_full_sweep(tmp_path, sweep_calls, capsys):
    recorded = os.path.join(ROOT, "benchmarks", "results", "sweep_fashion_mnist")
    before = {f: os.stat(os.path.join(recorded, f)).st_mtime for f in os.listdir(recorded)}
    message = one_line_exit(capsys, ["sweep", "--config", SWEEP_CONFIG, "--workdir", str(tmp_path), "--out", recorded,
                                     "--quick"])
    assert message.startswith("--quick: --out ") and "drop --quick" in message
    assert sweep_calls == [] and not os.listdir(tmp_path)
    assert {f: os.stat(os.path.join(recorded, f)).st_mtime for f in os.listdir(recorded)} == before
    # A quick sweep's own outputs may be rewritten, and a full sweep may write over anything.
    quick_out = tmp_path / "quick_out"
    quick_out.mkdir()
    (quick_out / sweep.RESULTS_JSON).write_text(json.dumps({"sweep": "fashion_mnist_batch_quick"}))
    sweep.main(["sweep", "--config", SWEEP_CONFIG, "--workdir", str(tmp_path), "--out", str(quick_out), "--quick"])
    sweep.main(["sweep", "--config", SWEEP_CONFIG, "--workdir", str(tmp_path), "--out", recorded])
    assert [c[0] for c in sweep_calls] == ["fashion_mnist_batch_quick", "fashion_mnist_batch"]


@pytest.mark.parametrize("argv, flag", [([], "--config"), (["--config", "/absent/sweep.py"], "--config"),
                                        (["--config", SWEEP_CONFIG], "--workdir")])
def test_bad_command_line_is_one_line_naming_the_flag(argv, flag, sweep_calls, capsys):
    message = one_line_exit(capsys, ["sweep", *argv])
    assert flag in message and "usage: python -m lars_jax.sweep" in message
    assert sweep_calls == []


@pytest.mark.parametrize("flag", ["--workdir", "--out"])
def test_an_unwritable_workdir_or_out_is_one_line_before_anything_runs(tmp_path, flag, sweep_calls, capsys):
    if os.geteuid() == 0:  # root writes anywhere: a read-only mount is what stops it
        context = mounted_tmpfs(tmp_path / "ro", "1m", "ro")
    else:
        os.makedirs(tmp_path / "ro")
        os.chmod(tmp_path / "ro", 0o555)
        context = contextlib.nullcontext(tmp_path / "ro")
    with context as ro:
        dirs = {"--workdir": str(tmp_path / "w"), "--out": str(tmp_path / "o"), flag: str(ro / "sweep")}
        message = one_line_exit(capsys, ["sweep", "--config", SWEEP_CONFIG, *(x for kv in dirs.items() for x in kv)])
    assert message.startswith(f"{flag} {ro / 'sweep'}: cannot write in {ro}"), message
    assert sweep_calls == [] and not os.path.exists(tmp_path / "w") and not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("flag", ["--workdir", "--out"])
def test_a_path_under_a_file_is_one_line_naming_its_own_flag(tmp_path, flag, sweep_calls, capsys):
    (tmp_path / "a_file").write_text("")
    dirs = {"--workdir": str(tmp_path / "w"), "--out": str(tmp_path / "o"), flag: str(tmp_path / "a_file" / "sweep")}
    message = one_line_exit(capsys, ["sweep", "--config", SWEEP_CONFIG, *(x for kv in dirs.items() for x in kv)])
    assert message.startswith(f"{flag} {tmp_path / 'a_file' / 'sweep'}: ") and message.endswith(f"choose another {flag}")
    other = "--out" if flag == "--workdir" else "--workdir"
    assert other not in message and sweep_calls == [], message


@pytest.mark.parametrize("overrides, field", [
    (["--config.optimizer_order=('sgd_goyal','lamb')"], "sweep.optimizer_order: 'lamb' is not in sweep.optimizers"),
    (["--config.optimizer_order=()"], "sweep.optimizer_order: empty"),
    (["--config.optimizers.lars.lr_multipliers=()"], "sweep.optimizers.lars.lr_multipliers"),
    (["--config.optimizers.nesterov.lr_multipliers=(1.0,-2.0)"], "sweep.optimizers.nesterov.lr_multipliers"),
    (["--config.batch_sizes=()"], "sweep.batch_sizes"),
    (["--config.seeds=()"], "sweep.seeds"),
    (["--config.extra_seed_batch_sizes=(512,)"], "sweep.extra_seed_batch_sizes: [512] not in sweep.batch_sizes"),
    (["--config.base.data.validation_examples=0"], "sweep.base.data.validation_examples"),
    # a cell's own config; the largest batch runs last, after hours of cells that could run
    (["--config.noise_scale_batch_sizes=()", "--config.batch_sizes=(256,65536)"],
     "sweep.batch_sizes: global batch 65536 exceeds the 50000 train examples"),
    (["--config.noise_scale_batch_sizes=()", "--config.optimizers.lars.overrides.schedule.lr_scaling=cubic"],
     "sweep cell lars at batch 256 (sweep.base, sweep.optimizers.lars.overrides, sweep.batch_sizes): "
     "config.schedule.lr_scaling"),
    (["--config.noise_scale_microbatches=16"],
     "sweep cell sgd_goyal at batch 256 (sweep.base, sweep.optimizers.sgd_goyal.overrides, sweep.batch_sizes, "
     "sweep.noise_scale_microbatches): config.model.bn_group_size: 32 must divide"),
])
def test_a_sweep_that_cannot_run_is_one_line_before_any_cell_runs(tmp_path, monkeypatch, capsys, overrides, field):
    monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: pytest.fail("a cell ran"))
    message = one_line_exit(capsys, ["sweep", "--config", SWEEP_CONFIG, *overrides, "--workdir", str(tmp_path / "w")])
    assert field in message, message
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.parametrize("denominator, formula", [
    ("paper", "eta*||w|| / (||g|| + beta*||w||)"),  # lars_jax.optim.lars, DESIGN.md
    ("optax", "eta*||w|| / (||g + beta*w||)"),  # the same as optax.lars
])
def test_trust_ratio_plot_labels_the_configs_denominator(tmp_path, monkeypatch, denominator, formula):
    s = load_sweep()
    s.optimizers.lars.overrides.optimizer.lars = dict(denominator=denominator)
    labels = []
    import matplotlib.figure
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda fig, text, **kw: labels.append(text))
    monkeypatch.setattr("lars_jax.sweep.plots.read_scalars",
                        lambda workdir, prefix: {prefix + "fc1/kernel": [(0, 0.5), (10, 0.2)]})
    record = {"optimizer": "lars", "batch_size": 256, "lr_multiplier": 1.0, "seed": 0, "workdir": "unused",
              "steps_per_epoch": 10, "peak_learning_rate": 8.0}
    sweep.plot_trust_ratios(s, [{"optimizer": "lars", "batch_size": 256, "lr_multiplier": 1.0}], [record],
                            str(tmp_path / "trust.png"))
    assert labels == [f"trust ratio = {formula}  ({denominator} denominator)"]


def _run_quick(workdir, out, *overrides):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the CLI's default: the one CPU device a user has
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    cmd = [sys.executable, "-m", "lars_jax.sweep", "--config", SWEEP_CONFIG, "--workdir", str(workdir),
           "--out", str(out), "--quick", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_selected_cell_is_the_rows_first_seed_record():
    from lars_jax.sweep.summary import selected_cell
    s = load_sweep()
    cell = lambda **kw: {"optimizer": "lars", "batch_size": 256, "lr_multiplier": 2.0, "seed": s.seeds[0], **kw}  # noqa: E731
    records = [cell(lr_multiplier=1.0), cell(seed=s.seeds[0] + 1), cell(batch_size=512), cell(optimizer="sgd"), cell()]
    row = {"optimizer": "lars", "batch_size": 256, "lr_multiplier": 2.0}
    assert selected_cell(s, records, row) is records[-1]
    assert selected_cell(s, records[:-1], row) is None


def test_cell_progress_lines_only_after_a_quiet_interval():
    import logging
    from lars_jax import reporting
    from lars_jax.sweep.cli import CellProgress

    now = [0.0]
    progress = CellProgress(15.0, clock=lambda: now[0])
    line = lambda path, level=logging.INFO: logging.LogRecord("absl", level, path, 1, "m", (), None)  # noqa: E731
    shown = []
    for t, record in ((5.0, line(reporting.__file__)), (16.0, line(reporting.__file__)), (17.0, line(reporting.__file__)),
                      (18.0, line("/x/orbax/checkpoint.py")), (19.0, line("/x/train.py", logging.WARNING))):
        now[0] = t
        shown.append(progress.filter(record))
    assert shown == [False, True, False, False, True]  # 15 s after the start, then 15 s after that line
    now[0] = 40.0
    progress.printed()  # the sweep's own line (a cell done) restarts the interval
    now[0] = 50.0
    assert not progress.filter(line(reporting.__file__))


@pytest.mark.slow  # a whole (quick) sweep
def test_quick_sweep_end_to_end_then_rerun_skips_every_cell(tmp_path):
    workdir, out = tmp_path / "sweep", tmp_path / "out"
    # An interval of 1 ns: every cell's progress lines reach the console (normally one per 15 quiet seconds).
    every_line = "--config.base.loop.log_every_seconds=1e-9"  # part of the cells' configs, as their hash
    proc = _run_quick(workdir, out, every_line)
    stdout = proc.stdout
    s = sweep.apply_quick(load_sweep())
    n_cells = sum(len(s.optimizers[o].lr_multipliers) for o in s.optimizer_order) * len(s.batch_sizes)
    assert stdout.count(" val ") == n_cells, stdout
    assert proc.stderr.count("first step") == n_cells and "orbax" not in proc.stderr, proc.stderr[-3000:]

    # results.json: schema, one record per cell, the selection rule applied.
    with open(out / sweep.RESULTS_JSON) as f:
        doc = json.load(f, parse_constant=lambda name: pytest.fail(f"results.json holds {name}: not strict JSON"))
    assert doc["schema_version"] == sweep.SCHEMA_VERSION
    for key in ("sweep", "description", "sweep_seconds", "cell_seconds", "machine", "batch_sizes", "optimizers",
                "seeds", "selection", "base_config", "summary", "prediction", "cells"):
        assert key in doc, key
    assert len(doc["cells"]) == n_cells
    for c in doc["cells"]:
        assert c["status"] == "ok" and 0.1 < c["test_accuracy"] <= 1.0, c  # better than chance after a few steps
        assert 0.1 < c["validation_accuracy"] <= 1.0 and c["train_loss_curve"], c
        # batch 256 runs in 8 pieces of one BN group: the noise scale is measured there only
        assert bool(c["b_simple_curve"]) == (c["batch_size"] in s.noise_scale_batch_sizes), c
        assert c["final_step"] == s.base.schedule.total_steps
        with open(os.path.join(c["workdir"], "results.json")) as f:
            plan = json.load(f)["plan"]  # the record's LR and epoch length are the Trainer's plan
        assert (c["peak_learning_rate"], c["steps_per_epoch"]) == (plan["peak_learning_rate"], plan["steps_per_epoch"])
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(c["workdir"]))
    assert len(doc["summary"]) == len(s.batch_sizes) * len(s.optimizer_order)
    for row in doc["summary"]:
        trials = {float(k): v for k, v in row["trial_validation_accuracies"].items()}
        assert set(trials) == set(s.optimizers[row["optimizer"]].lr_multipliers)
        assert trials[row["lr_multiplier"]] == max(trials.values())  # best validation trial selected
        assert row["mean_accuracy"] == pytest.approx(row["accuracies"][0])
        chosen = next(c for c in doc["cells"] if c["optimizer"] == row["optimizer"]
                      and c["batch_size"] == row["batch_size"] and c["lr_multiplier"] == row["lr_multiplier"])
        assert row["accuracies"][0] == chosen["test_accuracy"]  # the table reports test accuracy
    assert set(doc["prediction"]) == set(s.optimizer_order)

    # results.md: the table, every optimizer and batch, the LR search table.
    md = (out / sweep.RESULTS_MD).read_text()
    for o in s.optimizer_order:
        assert s.optimizers[o].label in md
    for b in s.batch_sizes:
        assert f"| {b:,} |" in md
    assert "LR search" in md and "validation accuracy %, which chooses" in md and "B_crit" in md

    # The plots: real PNGs with content; trust ratios read back from the LARS cells' TensorBoard events.
    for png in (sweep.ACCURACY_PNG, sweep.TRUST_PNG, sweep.NOISE_PNG):
        data = (out / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, png
    lars = next(c for c in doc["cells"] if c["optimizer"] == "lars")
    ratios = sweep.read_scalars(lars["workdir"], "layers/trust_ratio/")
    assert any(k.endswith("fc1/kernel") for k in ratios) and all(v for v in ratios.values())

    # Rerun: every cell is skipped, the outputs are rewritten with the same cells.
    stdout = _run_quick(workdir, out, every_line).stdout
    assert stdout.count("skipped") == n_cells, stdout
    with open(out / sweep.RESULTS_JSON) as f:
        again = json.load(f)
    assert [c["test_accuracy"] for c in again["cells"]] == [c["test_accuracy"] for c in doc["cells"]]


def test_mlp_parameter_count_and_outputs():
    from lars_jax import models
    import jax
    import jax.numpy as jnp
    model = models.create_model("mlp", num_classes=10, bn_group_size=4)
    variables = model.init(jax.random.key(0), jnp.zeros((8, 28, 28, 1)), train=False)
    assert models.param_count(variables["params"]) == 784 * 512 + 512 * 2 + 512 * 256 + 256 * 2 + 256 * 10 + 10
    logits, _ = model.apply(variables, jnp.ones((8, 28, 28, 1)), train=True, mutable=["batch_stats"])
    assert logits.shape == (8, 10)


def test_critical_batch_fit_recovers_a_known_tradeoff(rng):
    # S(B) = S_min + E_min / B exactly, then with 3% noise: B_crit = E_min / S_min = 512.
    s_min, e_min = 200.0, 102400.0
    batches = [64, 256, 1024, 4096, 16384]
    exact = sweep.critical_batch.fit(batches, [s_min + e_min / b for b in batches])
    assert exact["s_min"] == pytest.approx(s_min) and exact["e_min"] == pytest.approx(e_min)
    assert exact["b_crit"] == pytest.approx(512) and exact["relative_rms_error"] < 1e-9
    noisy = sweep.critical_batch.fit(batches, [(s_min + e_min / b) * rng.uniform(0.97, 1.03) for b in batches])
    assert noisy["b_crit"] == pytest.approx(512, rel=0.15)
    # Steps that grow with the batch describe no trade-off: no B_crit rather than a meaningless one.
    assert sweep.critical_batch.fit([256, 4096], [10, 40])["b_crit"] is None
    with pytest.raises(ValueError, match="two distinct"):
        sweep.critical_batch.fit([256, 256], [10, 12])


def test_steps_to_target_knee_and_thirds():
    cb = sweep.critical_batch
    curve = [(10, 2.0), (20, 1.2), (30, float("nan")), (40, 0.9), (50, 0.95)]
    # window means sit at their windows' centres (15, 35): the crossing of 1.0 lies 2/3 of the way
    assert cb.steps_to_target(curve, 1.0) == pytest.approx(15 + 20 * 0.2 / 0.3)
    assert cb.steps_to_target(curve, 0.5) is None and cb.steps_to_target(curve, 3.0) == 5
    # against the exact crossing of a smooth loss logged as means of 25-step windows
    loss = lambda t: 2.0 * np.exp(-t / 300.0)  # noqa: E731
    logged = [(s, float(np.mean(loss(np.arange(s - 25, s) + 1.0)))) for s in range(25, 2001, 25)]
    for target in (1.5, 0.8, 0.3):
        assert cb.steps_to_target(logged, target) == pytest.approx(-300 * np.log(target / 2.0), abs=1.0)
    assert cb.loss_target([0.1, 0.3, 0.2, 0.9]) == 0.3 and cb.loss_target([0.5, 0.4]) == 0.5
    # a run that never halved its first loss (chance level, or diverged) sets no target
    assert cb._lowest_if_learned([(1, 2.4), (2, 1.9), (3, 2.3)]) is None
    assert cb._lowest_if_learned([(1, 2.4), (2, float("nan"))]) is None
    assert cb._lowest_if_learned([(1, 2.4), (2, 0.7), (3, 0.9)]) == 0.7
    rows = [{"batch_size": b, "mean_validation_accuracy": a} for b, a in ((256, 0.90), (1024, 0.895), (4096, 0.887),
                                                                           (16384, 0.80))]
    assert cb.knee(rows) == 4096  # 0.887 < 0.90 - 0.01; 1,024 lost only half a point
    assert cb.knee(rows[:2]) is None
    diverged = [rows[0], rows[1], {"batch_size": 4096, "mean_validation_accuracy": None}]
    assert cb.knee(diverged) == 4096  # a batch that diverged lost more than a point
    assert cb.largest_within(rows) == 1024 and cb.largest_within(rows[:2]) == 1024
    assert cb.largest_within(rows[:1]) == 256 and cb.largest_within(diverged) == 1024
    # 16k back within a point after 4k fell out: the knee stands, the largest within is below it
    assert cb.largest_within(rows[:3] + [{"batch_size": 16384, "mean_validation_accuracy": 0.899}]) == 1024
    assert cb.thirds([(i, float(i)) for i in range(9)]) == [1.0, 4.0, 7.0]
