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
from lars_jax import checkpoints
from lars_jax.errors import EXIT_FAILURE, EXIT_PREEMPTED, EXIT_USAGE

pytestmark = pytest.mark.slow  # each case starts `python -m lars_jax.main` once or more


def run(workdir, *overrides, devices=8, **kwargs):
    return helpers.run(workdir, *overrides, devices=devices, timeout=240, **kwargs)


def assert_one_line_error(proc, *needles, code=None):
    """Non-zero exit; no traceback; the last stderr line, and only it, is `error: ...` with needles."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    if code is not None:
        assert proc.returncode == code, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]], out[-2000:]
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


BAD_INPUTS = {  # name -> (argv builder(tmp_path) -> (argv, env), what the line must name)
    "unknown_field": (lambda t: (["--config.nonexistent=1"], {}), ["--config.nonexistent", "no field"]),
    "missing_config": (lambda t: (["--config", str(t / "nope.py")], {}), ["nope.py", "no such file"]),
    "syntax_error": (lambda t: (["--config", _config_file(t, "def get_config(:\n")], {}), ["syntax error", "line 1"]),
    "no_get_config": (lambda t: (["--config", _config_file(t, "x = 1\n")], {}), ["get_config"]),
    "workdir_is_a_file": (lambda t: ([], {"workdir": "file"}), ["not a directory"]),
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
    config = helpers.CONFIG
    if "--config" in argv:  # another config file instead of the default
        config, argv = argv[1], argv[2:]
    cmd = [sys.executable, "-m", "lars_jax.main", "--config", config, "--workdir", str(workdir), *helpers.SMALL,
           "--config.schedule.total_steps=4", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=helpers.ROOT,
                          env=helpers.environment(8))
    line = assert_one_line_error(proc, *needles)
    assert "step 1/" not in proc.stderr, line  # failed before training
    if extra.get("workdir") == "file":
        assert workdir.read_text() == "precious"


@contextlib.contextmanager
def mounted_tmpfs(path, size, *options):
    """A tmpfs of `size` at `path` (root only); skips the test where mounting is not allowed."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join((f"size={size}", *options))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_workdir_is_one_line(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: a read-only mount is what stops it
        context = mounted_tmpfs(tmp_path / "ro", "1m", "ro")
    else:
        os.makedirs(tmp_path / "ro")
        os.chmod(tmp_path / "ro", 0o555)
        context = contextlib.nullcontext(tmp_path / "ro")
    with context as ro:
        proc = run(ro / "run", "--config.schedule.total_steps=2")
    assert_one_line_error(proc, "--workdir", "cannot write")


@pytest.mark.parametrize("field,value,named", [("model.name", "mlp", "model.name: 'small_cnn' there, 'mlp' now"),
                                               ("optimizer.name", "sgd", "optimizer.name: 'lars' there, 'sgd' now")])
def test_resuming_with_another_model_or_optimizer_is_refused(tmp_path, field, value, named):
    first = run(tmp_path, "--config.schedule.total_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    proc = run(tmp_path, "--config.schedule.total_steps=4", f"--config.{field}={value}")
    assert_one_line_error(proc, named, "new --workdir", code=EXIT_USAGE)
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

    again = run(tmp_path, "--config.schedule.total_steps=4", "--config.loop.checkpoint_every=2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "results.json").read_text() == text  # byte for byte

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
        context = mounted_tmpfs(tmp_path / "disk", "5m")
    else:
        context = contextlib.nullcontext(tmp_path / "disk")
    with context as disk:
        workdir = disk / "run"
        if fault == "tmpfs_full":
            proc = run(workdir, "--config.schedule.total_steps=6", *overrides)
        else:  # the first run writes step 2; its rerun may not write files over 1 MB
            first = run(workdir, "--config.schedule.total_steps=2", *overrides)
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
