"""Faults caused on purpose against `python -m lars_jax.main`: bad input, damaged checkpoints, a full
disk, reruns of finished runs, preemption. Each failure must be one line on stderr naming the cause
and the fix, a non-zero exit, no traceback, and no lost data."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import chex
import pytest

import helpers
import test_checkpoints
import test_data
from lars_jax import checkpoints
from lars_jax.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_USAGE

pytestmark = pytest.mark.slow  # each case starts `python -m lars_jax.main` once or more


def run(workdir, *overrides, devices=8, **kwargs):
    return helpers.run(workdir, *overrides, devices=devices, timeout=240, **kwargs)


def assert_one_line_error(proc, *needles, code=None, alone=False):
    """Non-zero exit; no traceback; the last stderr line, and only it, is `error: ...` with needles;
    alone: no other line either (a run refused before it started prints nothing else)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    if code is not None:
        assert proc.returncode == code, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]] and (len(lines) == 1 or not alone), out[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def strict_json(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")
    return json.loads(open(path).read(), parse_constant=refuse)


# ------------------------------------------------------------------------ one line per mistake
def _config_file(tmp_path, text):
    path = tmp_path / "experiment.py"
    path.write_text(text)
    return str(path)


DICT_CONFIG = "def get_config():\n    return {'global_batch_size': 64, 'schedule': {'total_steps': 4}}\n"
# name -> (argv builder(tmp_path) -> (argv, extra), what the line must name); all exit 2. extra:
# "workdir" (a file / under a file / empty / None: the flag left out) and "bare" (no overrides: the config file alone)
BAD_INPUTS = {
    "unknown_field": (lambda t: (["--config.nonexistent=1"], {}), ["--config.nonexistent", "no field"]),
    "missing_config": (lambda t: (["--config", str(t / "nope.py")], {}), ["nope.py", "no such file"]),
    "syntax_error": (lambda t: (["--config", _config_file(t, "def get_config(:\n")], {}), ["syntax error", "line 1"]),
    "no_get_config": (lambda t: (["--config", _config_file(t, "x = 1\n")], {}), ["get_config"]),
    "get_config_returns_a_dict": (lambda t: (["--config", _config_file(t, DICT_CONFIG)], {"bare": True}),
                                  ["get_config() returned a dict", "must return an ml_collections.ConfigDict"]),
    "get_config_returns_a_dict_overridden": (
        lambda t: (["--config", _config_file(t, DICT_CONFIG), "--config.schedule.total_steps=2"], {}),
        ["get_config() returned a dict", "must return an ml_collections.ConfigDict"]),
    "workdir_is_a_file": (lambda t: ([], {"workdir": "file"}), ["not a directory"]),
    "workdir_empty": (lambda t: ([], {"workdir": ""}), ["--workdir is empty"]),
    "workdir_missing": (lambda t: ([], {"workdir": None}), ["--workdir must have a value"]),
    "workdir_under_a_file": (lambda t: ([], {"workdir": "under_a_file"}), ["is not a directory"]),
    "eval_batch_not_dividing": (lambda t: (["--config.loop.eval_batch_size=100"], {}),
                                ["config.loop.eval_batch_size", "multiple of 8"]),
    "image_size_fixed_dataset": (lambda t: (["--config.data.image_size=32"], {}),
                                 ["config.data.image_size", "native 28x28"]),
    "mesh_model_not_dividing": (lambda t: (["--config.mesh.model=3"], {}), ["config.mesh.model", "does not divide"]),
    "num_epochs_inf": (lambda t: (["--config.schedule.num_epochs=inf"], {}), ["config.schedule.num_epochs", "finite"]),
    "unknown_model_option": (lambda t: (["--config.model.bn_momentum=0.5"], {}),
                             ["--config.model.bn_momentum", "no field"]),
    "keep_checkpoints_negative": (lambda t: (["--config.loop.keep_checkpoints=-1"], {}),
                                  ["config.loop.keep_checkpoints", ">= 1"]),
    "bad_value_type": (lambda t: (["--config.global_batch_size=abc"], {}), ["global_batch_size"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_mistake_is_one_line_before_anything_compiles(tmp_path, case):
    build, needles = BAD_INPUTS[case]
    argv, extra = build(tmp_path)
    workdir = tmp_path / "run"
    if extra.get("workdir") == "file":
        workdir.write_text("precious")
    if extra.get("workdir") == "under_a_file":
        (tmp_path / "file").write_text("precious")
        workdir = tmp_path / "file" / "run"
    config = helpers.CONFIG
    if "--config" in argv:  # another config file instead of the default
        config, argv = argv[1], argv[2:]
    overrides = () if extra.get("bare") else (*helpers.SMALL, "--config.schedule.total_steps=4")
    given = {"": ["--workdir", ""], None: []}.get(extra.get("workdir", "dir"), ["--workdir", str(workdir)])
    cmd = [sys.executable, "-m", "lars_jax.main", "--config", config, *given, *overrides, *argv]
    before = sorted(os.listdir(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=helpers.environment(8, PYTHONPATH=helpers.ROOT))
    line = assert_one_line_error(proc, *needles, code=EXIT_USAGE, alone=True)
    assert "step 1/" not in proc.stderr, line  # failed before training
    assert sorted(os.listdir(tmp_path)) == before, line  # nothing created: no workdir, nothing in the cwd
    if extra.get("workdir") == "file":
        assert workdir.read_text() == "precious"


def test_a_read_only_workdir_is_one_line(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: a read-only mount is what stops it
        context = helpers.mounted_tmpfs(tmp_path / "ro", "1m", "ro")
    else:
        os.makedirs(tmp_path / "ro")
        os.chmod(tmp_path / "ro", 0o555)
        context = contextlib.nullcontext(tmp_path / "ro")
    with context as ro:
        proc = run(ro / "run", "--config.schedule.total_steps=2")
    assert_one_line_error(proc, "--workdir", "cannot write", code=EXIT_USAGE, alone=True)


def test_a_damaged_test_split_is_named_before_training_not_after_it(tmp_path):
    bad = test_data.damaged_copy(tmp_path, "test_garbage")
    proc = run(tmp_path / "run", "--config.schedule.total_steps=2", f"--config.data.data_dir={tmp_path / 'tfds'}")
    assert_one_line_error(proc, f"{bad} cannot be read", f"`rm -rf {os.path.dirname(bad)}`", code=EXIT_FAILURE,
                          alone=True)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("field,value,named", [("model.name", "mlp", "model.name: 'small_cnn' -> 'mlp'"),
                                               ("optimizer.name", "sgd", "optimizer.name: 'lars' -> 'sgd'")])
def test_resuming_with_another_model_or_optimizer_is_refused(tmp_path, field, value, named):
    first = run(tmp_path, "--config.schedule.total_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    # Not even deliberately: the checkpoints' arrays do not fit another model or optimizer.
    proc = run(tmp_path, "--config.schedule.total_steps=2", f"--config.{field}={value}",
               f"--allow_config_change={field}")
    line = assert_one_line_error(proc, named, "arrays do not fit it", "new --workdir", code=EXIT_USAGE, alone=True)
    assert "--allow_config_change" not in line
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


# --------------------------------------------------------------------- nothing lost, nothing wrong
def test_keep_checkpoints_zero_is_refused_and_deletes_nothing(tmp_path):
    first = run(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    proc = run(tmp_path, "--config.schedule.total_steps=6", "--config.loop.checkpoint_every=2", "--config.loop.keep_checkpoints=0")
    assert_one_line_error(proc, "config.loop.keep_checkpoints", code=EXIT_USAGE)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]


def test_a_rerun_of_a_finished_run_leaves_its_results_and_a_resume_at_the_end_reproduces_them(tmp_path):
    first = run(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2")
    assert first.returncode == 0, first.stderr[-2000:]
    text = (tmp_path / "results.json").read_text()
    results = strict_json(tmp_path / "results.json")
    assert results["finished"] and results["final_step"] == 4 and results["images_per_second"] > 0

    config = (tmp_path / "config.json").read_text()
    os.unlink(tmp_path / "config.json")
    again = run(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "results.json").read_text() == text  # byte for byte
    assert (tmp_path / "config.json").read_text() == config  # a deleted config.json is written again

    # Killed after the last checkpoint, before results.json: the rerun evaluates the restored
    # state and reports the train figures saved with the checkpoint.
    os.unlink(tmp_path / "results.json")
    resumed = run(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    redone = strict_json(tmp_path / "results.json")
    for key in ("final_step", "test_accuracy", "test_loss", "test_examples", "train_loss", "train_seconds",
                "images_per_second", "finished"):
        assert redone[key] == results[key], key
    assert redone["resumed_from_step"] == 4


def test_a_corrupt_newest_checkpoint_resumes_from_the_previous_one_bit_identically(tmp_path):
    steps = ("--config.loop.checkpoint_every=2", "--config.loop.eval_every=6")
    ref = run(tmp_path / "ref", "--config.schedule.total_steps=6", *steps)
    assert ref.returncode == 0, ref.stderr[-2000:]
    first = run(tmp_path / "run", "--config.schedule.total_steps=6", "--config.loop.stop_after_steps=4", *steps)
    assert first.returncode == 0, first.stderr[-2000:]
    test_checkpoints.flip_4k(test_checkpoints.data_files(str(tmp_path / "run"), 4)[-1])  # the fault
    proc = run(tmp_path / "run", "--config.schedule.total_steps=6", *steps)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warned = [line for line in proc.stderr.splitlines() if "not intact" in line]
    # Where the 4 KiB land in the file varies with how orbax laid out the arrays of this run: in a
    # compressed chunk the read fails, in raw bytes the digest does not match. Either names the step.
    assert len(warned) == 1 and "step 4" in warned[0], proc.stderr[-2000:]
    assert "do not match the digest" in warned[0] or "its data is unreadable" in warned[0], warned[0]
    assert "Traceback" not in proc.stderr
    assert strict_json(tmp_path / "run" / "results.json")["resumed_from_step"] == 2
    assert os.listdir(tmp_path / "run" / "checkpoints_corrupt") == ["4"]
    a, b = checkpoints.read_checkpoint(tmp_path / "ref"), checkpoints.read_checkpoint(tmp_path / "run")
    chex.assert_trees_all_equal(a, b)


@pytest.mark.parametrize("fault", ["tmpfs_full", "file_size_limit"])
def test_a_failed_checkpoint_write_is_one_line_and_the_previous_stays_intact(tmp_path, fault):
    overrides = ("--config.loop.checkpoint_every=2", "--config.loop.eval_every=100")
    if fault == "tmpfs_full":
        # one checkpoint of the small CNN is ~3.2 MB: the first fits in 5 MB, the second does not
        context = helpers.mounted_tmpfs(tmp_path / "disk", "5m")
    else:
        context = contextlib.nullcontext(tmp_path / "disk")
    with context as disk:
        workdir = disk / "run"
        if fault == "tmpfs_full":
            proc = run(workdir, "--config.schedule.total_steps=6", *overrides)
        else:  # the first run writes step 2; its rerun may not write files over 1 MB
            first = run(workdir, "--config.schedule.total_steps=6", "--config.loop.stop_after_steps=2", *overrides)
            assert first.returncode == 0, first.stderr[-2000:]
            # SIGXFSZ ignored: write() then fails with EFBIG, as it fails with ENOSPC on a full disk
            limited = "ulimit -f 1024; trap '' XFSZ; exec " + " ".join(f"'{c}'" for c in helpers.command(
                workdir, "--config.schedule.total_steps=6", *overrides))
            proc = subprocess.run(["bash", "-c", limited], capture_output=True, text=True, timeout=240,
                                  cwd=helpers.ROOT, env=helpers.environment(8))
        line = assert_one_line_error(proc, "writing the checkpoint of step 4", str(workdir / "checkpoints"),
                                     "MiB free", "the previous checkpoint, step 2, is intact", code=EXIT_FAILURE)
        assert len(proc.stderr.splitlines()) < 20, proc.stderr[-3000:]
        assert int(checkpoints.read_checkpoint(workdir, 2)["step"]) == 2
        manager = checkpoints.CheckpointManager(str(workdir))
        assert manager.latest_step() == 2
        manager.close()
    del line


def test_a_full_disk_while_writing_config_or_results_is_one_line_and_a_rerun_completes(tmp_path):
    overrides = ("--config.schedule.total_steps=2", "--config.loop.checkpoint_every=2")
    with helpers.mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        workdir, filler = disk / "run", disk / "filler"

        def no_torn_file():
            assert not [n for n in os.listdir(workdir) if n.startswith(".tmp-")]
            for name in os.listdir(workdir):
                if name.endswith(".json"):
                    strict_json(workdir / name)

        helpers.fill(filler)  # full before the run: its first file, config.json, cannot be written
        proc = run(workdir, *overrides)
        assert_one_line_error(proc, f"writing {workdir / 'config.json'} failed (No space left on device",
                              "nothing was written", "Free space there", code=EXIT_FAILURE)
        no_torn_file()
        os.unlink(filler)
        done = run(workdir, *overrides)
        assert done.returncode == 0, done.stderr[-2000:]
        results = strict_json(workdir / "results.json")

        # Full at the end, results.json lost (killed after the last checkpoint): one page is left,
        # which the rewritten history frees and the new event file takes.
        os.unlink(workdir / "results.json")
        helpers.fill(filler)
        os.truncate(filler, os.path.getsize(filler) - 4096)
        proc = run(workdir, *overrides)
        assert_one_line_error(proc, f"writing {workdir / 'results.json'} failed (No space left on device",
                              code=EXIT_FAILURE)
        no_torn_file()
        assert not os.path.exists(workdir / "results.json")
        os.unlink(filler)
        redone = run(workdir, *overrides)
        assert redone.returncode == 0, redone.stderr[-2000:]
        again = strict_json(workdir / "results.json")
        for key in ("final_step", "test_accuracy", "test_loss", "train_loss", "train_seconds"):
            assert again[key] == results[key], key


# ---------------------------------------------------------------------------------- preemption
def test_preemption_exits_75_and_a_shell_retry_loop_finishes_the_run(tmp_path):
    # The loop docs/failures.md gives, with the child's pid kept so the test can send SIGTERM.
    command = " ".join(f"'{c}'" for c in helpers.command(tmp_path / "run", "--config.schedule.total_steps=40",
                                                            "--config.loop.checkpoint_every=100"))
    loop = (f"while true; do {command} & echo $! > {tmp_path}/pid; wait $!; rc=$?; echo $rc >> {tmp_path}/codes; "
            f"[ $rc -eq {EXIT_PREEMPTED} ] || break; done; exit $rc")
    log = open(tmp_path / "log", "w")
    shell = subprocess.Popen(["bash", "-c", loop], stdout=log, stderr=subprocess.STDOUT, cwd=helpers.ROOT,
                             env=helpers.environment(8))
    try:
        deadline = time.time() + 240
        while "step 3/" not in (tmp_path / "log").read_text():
            assert time.time() < deadline and shell.poll() is None, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.1)
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)
        code = shell.wait(timeout=300)
    finally:
        shell.kill()
    text = (tmp_path / "log").read_text()
    assert code == 0, text[-3000:]
    assert (tmp_path / "codes").read_text().split() == [str(EXIT_PREEMPTED), "0"], text[-3000:]
    results = strict_json(tmp_path / "run" / "results.json")
    assert results["final_step"] == 40 and 3 <= results["resumed_from_step"] < 40


def test_ctrl_c_checkpoints_the_current_step_exits_130_and_a_rerun_is_bit_identical(tmp_path):
    overrides = ("--config.schedule.total_steps=40", "--config.loop.checkpoint_every=100", "--config.loop.eval_every=40")
    ref = run(tmp_path / "ref", *overrides)
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = helpers.start(tmp_path / "run", *overrides, devices=8, log_path=tmp_path / "log")
    try:
        helpers.wait_for(tmp_path / "log", "step 3/", proc)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    log = (tmp_path / "log").read_text()
    assert code == EXIT_INTERRUPTED and "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    said = [line for line in log.splitlines() if "SIGINT" in line]
    assert len(said) == 1 and "run the same command again to resume (exit code 130)" in said[0], said
    stopped = int(said[0].split("SIGINT: stopped at step ")[1].split("/")[0])
    assert 3 <= stopped < 40 and int(checkpoints.read_checkpoint(tmp_path / "run")["step"]) == stopped
    assert not os.path.exists(tmp_path / "run" / "results.json")
    rerun = run(tmp_path / "run", *overrides)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert strict_json(tmp_path / "run" / "results.json")["resumed_from_step"] == stopped
    chex.assert_trees_all_equal(checkpoints.read_checkpoint(tmp_path / "ref"),
                                checkpoints.read_checkpoint(tmp_path / "run"))


def test_a_dead_peer_ends_with_one_line_naming_the_process_and_the_checkpoint(tmp_path):
    port = helpers.free_port()
    overrides = ("--config.schedule.total_steps=100000", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=100000")
    procs = [helpers.start(tmp_path / "run", *overrides, *helpers.multiprocess_flags(port, 2, i, heartbeat=5),
                           devices=2, log_path=tmp_path / f"log{i}") for i in range(2)]
    try:
        deadline = time.time() + 240
        while "step 5/" not in (tmp_path / "log0").read_text():
            assert time.time() < deadline and procs[0].poll() is None, (tmp_path / "log0").read_text()[-2000:]
            time.sleep(0.2)
        # The job holds the workdir once (process 0's worker), and another run is refused.
        holder = json.loads((tmp_path / "run" / "lock").read_text())
        with open(f"/proc/{holder['pid']}/stat") as f:  # its parent: process 0's supervisor
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == procs[0].pid
        assert "--process_id=0" in holder["command"]
        other = run(tmp_path / "run", *overrides, devices=2)
        assert_one_line_error(other, f"is in use by another run (PID {holder['pid']} on ", code=EXIT_USAGE,
                              alone=True)
        procs[1].kill()
        killed_at = time.time()
        code = procs[0].wait(timeout=120)
        waited = time.time() - killed_at
    finally:
        for p in procs:
            p.kill()
    lines = [line for line in (tmp_path / "log0").read_text().splitlines() if line.strip()]
    assert code == EXIT_FAILURE and waited < 60, lines[-20:]
    assert lines[-1].startswith("error: process 0 of 2 stopped"), lines[-20:]
    assert "last checkpoint: step" in lines[-1] and "rerun the same command on every host" in lines[-1], lines[-1]
    # JAX's coordination service names the failure just before
    assert any("stopped sending heartbeats" in line for line in lines), lines[-20:]
