"""lars_jax.workdir, .lock, .summaries, .resume: what a run writes is strict JSON, atomic, as
readable as a plain open(), never torn by a full disk; one run holds a workdir at a time; a resume
keeps the math unless a change is asked for, and then it is recorded."""
import json
import math
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from helpers import ROOT, fill, mounted_tmpfs
from lars_jax import lock, resume, workdir
from lars_jax.errors import EXIT_USAGE, ConfigError, OutputError, WorkdirBusyError, WorkdirError


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_permissions_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "reference.txt", "w") as f:  # the independent reference: a plain new file
            f.write("x")
        workdir.write_json(str(tmp_path / "results.json"), {"a": 1})
        workdir.write_text(str(tmp_path / "results.md"), "x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(os.stat(tmp_path / "reference.txt").st_mode)
    assert want == 0o666 & ~umask
    for name in ("results.json", "results.md"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == want, name
    assert sorted(os.listdir(tmp_path)) == ["reference.txt", "results.json", "results.md"]  # no temporaries left


def test_finite_or_none_makes_nested_records_strict_json():
    record = {"curve": [(1, 0.5), (2, math.nan)], "fit": {"b": math.inf, "n": 3, "s": "x"}, "ok": -math.inf,
              "flag": True}
    out = workdir.finite_or_none(record)
    assert out == {"curve": [[1, 0.5], [2, None]], "fit": {"b": None, "n": 3, "s": "x"}, "ok": None, "flag": True}
    json.dumps(out, allow_nan=False)  # raises on any NaN / Infinity left
    with pytest.raises(ValueError):
        json.dumps(record, allow_nan=False)


def test_strict_names_why_each_top_level_key_is_null():
    record = {"acc": math.nan, "loss": None, "lr": None, "noise": {"b": math.inf}, "n": 3,
              "null_reasons": {"old": "kept"}}
    out = workdir.strict(record, {"loss": "no step ran"})
    assert out == {"acc": None, "loss": None, "lr": None, "noise": {"b": None}, "n": 3,
                   "null_reasons": {"old": "kept", "acc": "not a finite number (nan)", "loss": "no step ran"}}
    assert list(out)[-1] == "null_reasons"


# ------------------------------------------------------------------------- one run per workdir
HOLD = """
import sys, time
from lars_jax import lock
held = lock.Lock(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(tmp_path, seconds):
    """A process that takes the lock of tmp_path and keeps it `seconds` (or until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(seconds)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_workdir_is_refused_naming_its_holder_and_kill_9_frees_it(tmp_path):
    proc = _holder(tmp_path, 600)
    try:
        with pytest.raises(WorkdirBusyError) as refused:
            lock.Lock(str(tmp_path))
        message = str(refused.value)
        assert f"PID {proc.pid} on {socket.gethostname()} since " in message, message
        assert "--wait_for_workdir" in message and "another --workdir" in message
        assert refused.value.exit_code == EXIT_USAGE
        proc.kill()  # kill -9: no code of the holder runs, the OS drops its lock
        proc.wait()
        mine = lock.Lock(str(tmp_path))
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
        with pytest.raises(WorkdirBusyError, match=f"PID {os.getpid()} "):  # held per open file, even in one process
            lock.Lock(str(tmp_path))
        mine.release()
        lock.Lock(str(tmp_path)).release()
    finally:
        proc.kill()


def test_waiting_for_a_held_workdir_takes_it_when_the_holder_ends(tmp_path):
    proc = _holder(tmp_path, 2)
    try:
        t0 = time.monotonic()
        held = lock.Lock(str(tmp_path), wait=True)
        assert time.monotonic() - t0 > 0.5  # it waited for the holder's end...
        assert proc.wait(timeout=60) == 0  # ...which was ending (the OS drops the lock before the exit completes)
        held.release()
    finally:
        proc.kill()


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_workdir_is_a_command_line_mistake(tmp_path, name):
    with pytest.raises(WorkdirError, match="--workdir is empty") as refused:
        workdir.check(name)
    assert refused.value.exit_code == EXIT_USAGE


# -------------------------------------------------------------------------------- a full disk
@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs (root only) holding `results.json` (the old one) and filled to the last byte."""
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "results.json").write_text('{"old": 1}\n')
        fill(disk / "filler")
        yield disk


def test_a_json_write_on_a_full_disk_is_one_line_and_leaves_the_old_file(full_disk):
    with pytest.raises(OutputError) as failed:
        workdir.write_json(str(full_disk / "results.json"), {"new": 2, "curve": list(range(2000))})
    message = str(failed.value)
    assert str(full_disk / "results.json") in message and "No space left on device" in message, message
    assert "MiB free there" in message and "its previous version is intact" in message and "\n" not in message
    assert (full_disk / "results.json").read_text() == '{"old": 1}\n'
    assert sorted(os.listdir(full_disk)) == ["filler", "results.json"]  # no temporary left behind
    os.unlink(full_disk / "filler")  # space freed: the same write completes
    workdir.write_json(str(full_disk / "results.json"), {"new": 2})
    assert json.loads((full_disk / "results.json").read_text()) == {"new": 2}


def test_tensorboard_events_on_a_full_disk_keep_every_whole_record(full_disk):
    from lars_jax import summaries
    from lars_jax.sweep.events import read_scalars

    os.unlink(full_disk / "filler")
    writer = summaries.EventWriter(str(full_disk))
    writer.write_hparams({"lr": 0.5, "name": "x"})
    writer.write_scalars(1, {"loss": 2.0, "acc": 0.25})
    fill(full_disk / "filler")  # the disk fills up
    size = os.path.getsize(writer.path)
    with pytest.raises(OutputError, match="writing TensorBoard events to .* failed .No space left on device"):
        for step in range(2, 2000):  # the first fits in the file's last page; a later one does not
            writer.write_scalars(step, {"loss": 1.0 / step, "acc": 0.5})
    assert os.path.getsize(writer.path) >= size
    series = read_scalars(str(full_disk), "")  # TensorBoard's reader: whole records, no torn one
    assert series["loss"][0] == (1, 2.0) and [s for s, _ in series["loss"]] == list(range(1, len(series["loss"]) + 1))
    writer.close()


# ------------------------------------------------------------------------ what a resume may change
def test_the_config_record_refuses_math_changes_accepts_named_ones_and_keeps_the_start(tmp_path):
    start = {"global_batch_size": 64, "loop": {"log_every": 1}, "model": {"name": "small_cnn", "bn_group_size": 8}}
    flat = resume.flatten(start)
    first = resume.Record(str(tmp_path))
    assert first.check({**flat, "global_batch_size": 7}, fresh=True) == {}  # a new workdir: nothing to keep
    first.keep_config(start, fresh=True)
    first.append(from_step=0, changes={}, num_devices=8, num_processes=1)

    record = resume.Record(str(tmp_path))
    assert record.check({**flat, "loop.log_every": 5}, fresh=False) == {"loop.log_every": [1, 5]}  # changes nothing
    with pytest.raises(ConfigError, match=r"global_batch_size: 64 -> 128\. Use a new --workdir for this config, or "
                                          r"add --allow_config_change=global_batch_size to change it deliberately"):
        record.check({**flat, "global_batch_size": 128}, fresh=False)
    with pytest.raises(ConfigError, match="--allow_config_change: no config field 'global_batch'"):
        record.check(flat, fresh=False, allowed=["global_batch"])
    with pytest.raises(ConfigError, match=r"model.name: 'small_cnn' -> 'mlp' \(the checkpoints' arrays do not fit "
                                          r"it\)\. Use a new --workdir for this config$"):
        record.check({**flat, "model.name": "mlp"}, fresh=False, allowed=["model.name"], fixed=["model.name"])
    changes = record.check({**flat, "global_batch_size": 128}, fresh=False, allowed=["global_batch_size"])
    assert changes == {"global_batch_size": [64, 128]}
    record.keep_config(resume.flatten({**start, "global_batch_size": 128}), fresh=False)
    record.append(from_step=2, changes=changes, num_devices=8, num_processes=1)

    later = resume.Record(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == start  # the start's config, kept
    assert later.reference()["global_batch_size"] == 128  # later resumes compare with the config as changed
    assert later.changes() == [{"from_step": 2, "changes": {"global_batch_size": [64, 128]}}]
    os.unlink(tmp_path / "config.json")
    resume.Record(str(tmp_path)).keep_config({"anything": 1}, fresh=False)
    assert json.loads((tmp_path / "config.json").read_text()) == start  # a deleted config.json, rebuilt
