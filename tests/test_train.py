"""The train step and loop: sharded == single device, the CLI end to end, resume, clear errors."""
import glob
import json
import os
import re
import signal
import sys
import time

import chex
import jax
import numpy as np
import pytest

import helpers
from helpers import max_rel_diff, run_steps, small_config
from lars_jax import configs, train
from lars_jax.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED

def test_8_devices_equal_1_device():
    # Same BatchNorm groups on both (8 examples: one device's share), so the math is identical and
    # only the order of float32 sums differs: the cross-device gradient all-reduce and BN moments.
    # After 3 LARS steps at LR 2 the parameters agree to ~1e-6 relative; 1e-4 leaves room for
    # that rounding to grow through BatchNorm's normalisation, and is far below any real bug
    # (a wrong all-reduce scale changes params by O(1) relative).
    assert jax.device_count() == 8
    config = small_config(model__bn_group_size=8)
    one, m1 = run_steps(config, 3, jax.devices()[:1])
    eight, m8 = run_steps(config, 3)
    assert int(one.step) == int(eight.step) == 3
    worst = max_rel_diff(one.params, eight.params)
    print(f"max relative param difference, 8 devices vs 1 after 3 steps: {worst:.2e}")
    assert worst < 1e-4
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
    chex.assert_trees_all_close(one.batch_stats, eight.batch_stats, rtol=1e-4, atol=1e-6)


def test_train_step_reduces_loss_and_reports_layer_stats():
    config = small_config(schedule__total_steps=8, global_batch_size=128, schedule__base_learning_rate=1.0,
                          loop__layer_stats_every=1)
    trainer = train.Trainer(config)
    state = trainer.sharded_init_state()
    batches = trainer.train_batches(0)
    first = None
    for _ in range(8):
        state, metrics = trainer.train_step(state, next(batches))
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < first
    layers = jax.device_get(metrics["layers"])
    ratios = {k: v for k, v in layers.items() if k.startswith("trust_ratio/") and "kernel" in k}
    assert ratios and all(np.isfinite(v) and v > 0 for v in ratios.values())
    assert float(layers["trust_ratio/bn1/scale"]) == 1.0  # excluded: ndim 1


def cli(workdir, *overrides, env=None, timeout=240):
    return helpers.run(workdir, "--config.loop.layer_stats_every=2", *overrides, env=env, timeout=timeout)


@pytest.mark.slow  # a subprocess
def test_cli_end_to_end_then_resume(tmp_path):
    first = cli(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=4")
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("final_step", "test_accuracy", "test_loss", "train_loss", "wall_seconds", "images_per_second",
                "global_batch_size", "num_devices", "num_processes", "config_name"):
        assert key in results
    assert results["final_step"] == results["evaluated_at_step"] == 4 and results["num_devices"] == 8
    assert results["test_examples"] == 10000
    # The batch plan the run used: 64 over 8 devices; Fashion-MNIST's 60,000 train images in whole batches.
    assert results["plan"]["steps_per_epoch"] == 937 and results["epochs"] == 4 / 937
    assert {k: results["plan"][k] for k in ("global_batch", "processes", "workers", "microbatches", "total_steps",
                                            "stop_step", "per_device_batch", "microbatch_size")} == {
        "global_batch": 64, "processes": 1, "workers": 8, "microbatches": 1, "total_steps": 4, "stop_step": 4,
        "per_device_batch": 8, "microbatch_size": 8}
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["resumed_from_step"] == 0
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    assert json.loads((tmp_path / "config.json").read_text())["global_batch_size"] == 64
    assert "loss" in first.stderr and "img/s" in first.stderr and "ETA" in first.stderr
    # One progress line per log window with one ETA; libraries' notices stay out of the console.
    console = first.stderr.splitlines()
    for noise in ("Setting work unit notes", "Unable to initialize backend", "oneDNN", "Hyperparameters",
                  "layers/", "steps_per_sec", "dataset_info.py"):
        assert not any(noise in line for line in console), noise
    progress = [line for line in console if "img/s" in line]
    assert len(progress) == 4 and all(line.count("ETA") == 1 for line in progress), progress
    assert "first step" in progress[0]  # with its time: loading the data and compiling
    assert max(map(len, console)) < 250

    # The same command with a longer budget, asked for deliberately, resumes at step 4 instead of
    # starting over, and the change is recorded.
    second = cli(tmp_path, "--config.schedule.total_steps=6", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=6",
                 "--allow_config_change=schedule.total_steps")
    assert second.returncode == 0, second.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["resumed_from_step"] == 4 and results["final_step"] == 6
    assert results["config_changes"] == [{"from_step": 4, "changes": {"schedule.total_steps": [4, 6]}}]
    assert results["plan"]["total_steps"] == results["plan"]["stop_step"] == 6
    assert "step 2/6" not in second.stderr and "step 6/6" in second.stderr


@pytest.mark.parametrize("override,field", [
    ({"global_batch_size": 100}, "config.global_batch_size"),  # 8 devices
    ({"model__name": "vgg"}, "config.model.name"),
    ({"data__name": "mnist2"}, "config.data.name"),
    ({"data__synthetic_num_eval": 0}, "config.data.synthetic_num_eval: must be > 0"),
    ({"loop__log_every_seconds": -1.0}, "config.loop.log_every_seconds: must be > 0 or None"),
    ({"mesh__microbatches": 3, "global_batch_size": 64}, "config.global_batch_size"),
    ({"model__bn_group_size": 3}, "config.model.bn_group_size"),
    ({"model__variant": "v1"}, "config.model.variant: not an option of model 'small_cnn'"),
    ({"optimizer__lars__momentum": 1.0}, r"config.optimizer.lars.momentum: must lie in \[0, 1\)"),
    ({"schedule__poly_power": -1.0}, "config.schedule.poly_power: must be > 0"),
])
def test_bad_config_fails_before_compiling_naming_the_field(override, field):
    with pytest.raises(configs.ConfigError, match=field):
        train.Trainer(small_config(**override))


@pytest.mark.slow  # a subprocess
def test_cli_reports_missing_data_with_the_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli(tmp_path / "run", "--config.schedule.total_steps=2", f"--config.data.data_dir={tmp_path / 'tfds'}",
               env={"LARS_JAX_FASHION_MNIST_DIR": str(empty), "LARS_JAX_OFFLINE": "1"}, timeout=120)
    assert proc.returncode != 0
    assert "apt-get install -y dataset-fashion-mnist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # a subprocess
def test_cli_bad_batch_names_field(tmp_path):
    proc = cli(tmp_path, "--config.global_batch_size=100", "--config.schedule.total_steps=2", timeout=120)
    assert proc.returncode != 0 and "config.global_batch_size" in proc.stderr
    assert "multiple of 8" in proc.stderr


@pytest.mark.slow  # a subprocess
def test_every_requested_layer_statistic_reaches_tensorboard_whatever_the_console_shows(tmp_path):
    # layer_stats_every=3 is not a multiple of log_every=4: windows (1-4, 5-8, 9-12) hold steps
    # 3, 6, then both 9 and 12; every one of them must be written, not only a window's last.
    # A console line is due at every step too (an interval of 1 us): TensorBoard must not change.
    from lars_jax.sweep.events import read_scalars

    proc = helpers.run(tmp_path, "--config.schedule.total_steps=12", "--config.loop.log_every=4", "--config.loop.layer_stats_every=3",
                       "--config.loop.eval_every=12", "--config.loop.log_every_seconds=1e-6", timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A line covers the steps the device finished since the previous one (how many: a race with the
    # host), each line's loss their mean; the log_every steps always end one.
    lines = [line for line in proc.stderr.splitlines() if re.search(r"step \d+/12 ", line)]
    ends = [int(re.search(r"step (\d+)/12", line)[1]) for line in lines]
    assert ends[0] == 1 and {4, 8, 12} <= set(ends) and ends == sorted(set(ends)), lines
    assert "first step" in lines[0] and not any("first step" in line for line in lines[1:])
    losses = [float(re.search(r"loss (\S+)", line)[1]) for line in lines]  # 4 decimals
    per_step = np.repeat(losses, np.diff([0] + ends))
    train = read_scalars(str(tmp_path), "train_loss")["train_loss"]
    assert [s for s, _ in train] == [4, 8, 12]  # TensorBoard at log_every steps only, means of their windows
    np.testing.assert_allclose([v for _, v in train], per_step.reshape(3, 4).mean(axis=1), atol=1e-4)
    series = read_scalars(str(tmp_path), "layers/")
    assert series and all(len(k) < 80 for k in series)
    for name in ("layers/trust_ratio/conv1/kernel", "layers/w_norm/fc2/bias", "layers/g_norm/bn1/scale"):
        assert [s for s, _ in series[name]] == [3, 6, 9, 12], (name, series[name])
    assert "layers/" not in proc.stderr  # TensorBoard only: no per-layer lines on the console
    # 8 devices: the gradient noise scale at every log_every step, and its last-20% mean in results
    gns = read_scalars(str(tmp_path), "gns/")
    assert {k: [s for s, _ in v] for k, v in gns.items()} == {
        f"gns/{k}": [4, 8, 12] for k in ("b_simple", "grad_sq", "trace_sigma")}
    noise = json.loads((tmp_path / "results.json").read_text())["noise_scale"]
    assert noise["steps"] == 3 and noise["from_step"] == 10  # steps 10-12: the last ceil(20% of 12)
    if noise["grad_sq"] > 0:
        assert noise["b_simple"] == pytest.approx(noise["trace_sigma"] / noise["grad_sq"])
    else:  # a noise-dominated average: no ratio rather than a negative one
        assert noise["b_simple"] is None


@pytest.mark.slow  # a CLI run
def test_one_device_says_the_noise_scale_is_not_measured(tmp_path):
    proc = helpers.run(tmp_path, "--config.schedule.total_steps=2", "--config.loop.eval_every=2", devices=1,
                       timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum("Gradient noise scale not measured" in line for line in proc.stderr.splitlines()) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["noise_scale"] is None and "not measured" in results["null_reasons"]["noise_scale"]


def test_a_console_line_follows_the_first_step_then_every_interval():
    from lars_jax import reporting
    now = [100.0]
    lines = reporting.LineClock(15.0, clock=lambda: now[0])
    assert lines.due()  # after the first step, whatever the time
    lines.printed()
    for t, due in ((114.9, False), (115.0, True), (300.0, True)):
        now[0] = t
        assert lines.due() == due, t
    lines.printed()  # any line (step-based too) restarts the interval
    now[0] = 314.0
    assert not lines.due() and lines.seconds_left() == pytest.approx(1.0)
    now[0] = 305.0
    assert lines.seconds_left() == pytest.approx(10.0)  # how long the loop may wait for the device
    now[0] = 400.0
    assert lines.seconds_left() == 1.0  # overdue: asked again in a second, not in a busy loop
    steps_only = reporting.LineClock(None, clock=lambda: now[0])
    assert steps_only.due()
    steps_only.printed()
    now[0] += 1e6
    assert not steps_only.due() and steps_only.seconds_left() is None


def test_a_line_covers_the_oldest_steps_the_device_finished():
    from lars_jax import loop

    class Leaf:  # a device array that is computed or not
        def __init__(self, ready):
            self.ready = ready

        def is_ready(self):
            return self.ready

    pending = [(5, {"loss": Leaf(True), "layers": {"a": Leaf(True)}}), (6, {"loss": Leaf(True), "lr": Leaf(False)}),
               (7, {"loss": Leaf(True)})]
    assert loop.computed(pending) == 1  # step 7 done before step 6 ends nothing: a line covers a prefix
    pending[1][1]["lr"].ready = True
    assert loop.computed(pending) == 3 and loop.computed([]) == 0
    assert loop.finished({"x": jax.numpy.arange(3.0) * 2}).wait(60)


def test_noise_scale_tail_sums_only_its_own_window_across_resumes():
    from lars_jax import reporting
    step = lambda s, v: (s, {"noise_scale": {"grad_sq": v, "trace_sigma": 10 * v}})  # noqa: E731
    first = reporting.NoiseScaleTail(10)  # a run stopped at step 10: its tail is steps 9-10
    first.add([step(s, 1.0) for s in range(1, 11)])
    assert first.result()["steps"] == 2 and first.result()["from_step"] == 9
    # The same run continued to 20 (tail: steps 17-20): step 9-10's sums belong to no part of it.
    longer = reporting.NoiseScaleTail(20, {"noise_scale_tail": first.progress()})
    longer.add([step(s, 2.0) for s in range(11, 21)])
    assert longer.result() == {"b_simple": 10.0, "b_simple_interval": [10.0, 10.0], "grad_sq": 2.0,
                               "trace_sigma": 20.0, "steps": 4, "from_step": 17}
    # Resumed inside its own window (checkpoint at 18): the saved sums carry on.
    part = reporting.NoiseScaleTail(20)
    part.add([step(s, 2.0) for s in range(1, 19)])
    resumed = reporting.NoiseScaleTail(20, {"noise_scale_tail": part.progress()})
    resumed.add([step(s, 4.0) for s in (19, 20)])
    assert resumed.result()["steps"] == 4 and resumed.result()["grad_sq"] == 3.0 and resumed.result()["from_step"] == 17


def test_ctrl_c_stops_at_the_next_step_and_a_second_one_at_once():
    from lars_jax import loop

    def before(signum, frame):  # the handler installed before the loop; restored after it
        pass

    previous = signal.signal(signal.SIGINT, before)
    try:
        watch = loop.PreemptionWatch()
        try:
            assert not watch(1)
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends: a stop at the next step, with a checkpoint
            assert watch(2) and watch.name == "SIGINT" and watch.exit_code == EXIT_INTERRUPTED
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # the second: at once
                time.sleep(1)
        finally:
            watch.close()
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, previous)
    # A SIGINT ignored at start (a background job of a non-interactive shell) stays ignored.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        background = loop.PreemptionWatch()
        os.kill(os.getpid(), signal.SIGINT)
        assert not background(1) and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        background.close()
    finally:
        signal.signal(signal.SIGINT, previous)
    terminated = loop.PreemptionWatch()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert terminated(1) and terminated.exit_code == EXIT_PREEMPTED
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated preemption notice changes nothing
    finally:
        terminated.close()


def test_the_last_line_gives_the_step_of_an_accuracy_older_than_the_stop():
    from lars_jax.main import done_line

    stopped = {"final_step": 161, "total_steps": 585, "test_accuracy": 0.78834, "evaluated_at_step": 117,
               "preempted": True}
    assert done_line(stopped, "runs/x") == ("Done at step 161 of 585, test accuracy 0.7883 (evaluated at step 117); "
                                            "stopped: rerun the same command to resume")
    finished = {**stopped, "final_step": 585, "evaluated_at_step": 585, "preempted": False}
    assert done_line(finished, "runs/x") == "Done at step 585 of 585, test accuracy 0.7883; results in runs/x/results.json"
    assert done_line({**stopped, "test_accuracy": None}, "runs/x").startswith("Done at step 161 of 585; stopped")
    older = {k: v for k, v in finished.items() if k != "evaluated_at_step"}  # results.json of an earlier version
    assert done_line(older, "runs/x") == done_line(finished, "runs/x")


def test_the_console_drops_asyncios_report_of_a_failed_orbax_write_and_keeps_other_errors():
    """A checkpoint write that fails (full disk, file too large) can leave orbax's gathered futures
    unretrieved; asyncio then logs each with its traceback, beside lars_jax's one-line error."""
    import logging as pylogging

    from lars_jax import reporting

    def record(filename: str, name: str = "asyncio") -> pylogging.LogRecord:
        code = compile("raise ValueError('OUT_OF_RANGE: Error writing params in OCDBT database')", filename, "exec")
        try:
            exec(code, {})
        except ValueError:
            exc_info = sys.exc_info()
        return pylogging.LogRecord(name, pylogging.ERROR, "/usr/lib/python3/asyncio/base_events.py", 1771,
                                   "_GatheringFuture exception was never retrieved", (), exc_info)

    quiet = reporting.QuietLibraries()
    assert not quiet.filter(record("/venv/site-packages/orbax/checkpoint/_src/serialization/serialization.py"))
    assert quiet.filter(record("/venv/site-packages/somelib/io.py"))  # another library's lost error: shown
    assert quiet.filter(record("/venv/site-packages/orbax/checkpoint/x.py", name="somelib"))
