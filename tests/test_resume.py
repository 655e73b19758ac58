"""One run per workdir, and a resume that keeps the math: caused on purpose against
`python -m lars_jax.main` (two runs started together, a run waiting for a killed holder, resumes
with another batch, learning rate or device count)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import helpers
from lars_jax import checkpoints
from lars_jax.errors import EXIT_USAGE
from test_faults import assert_one_line_error, run, strict_json

pytestmark = pytest.mark.slow  # each case starts `python -m lars_jax.main` once or more


# ------------------------------------------------------------------------- one run per workdir
@pytest.mark.parametrize("second", [(), ("--config.schedule.base_learning_rate=4",)], ids=["same", "other_lr"])
def test_two_runs_started_together_on_one_workdir_one_is_refused_and_nothing_is_mixed(tmp_path, second):
    overrides = ("--config.schedule.total_steps=6", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=6")
    procs = [helpers.start(tmp_path / "run", *overrides, *extra, devices=8, log_path=tmp_path / f"log{i}")
             for i, extra in enumerate([(), second])]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    logs = [(tmp_path / f"log{i}").read_text() for i in range(2)]
    assert sorted(codes) == [0, EXIT_USAGE], logs
    winner = codes.index(0)
    loser = [line for line in logs[1 - winner].splitlines() if line.strip()]
    assert len(loser) == 1 and "Traceback" not in logs[1 - winner], loser  # one line, nothing else
    assert loser[0].startswith(f"error: --workdir {tmp_path / 'run'} is in use by another run "
                               f"(PID {procs[winner].pid} on "), loser[0]
    assert "--wait_for_workdir" in loser[0] and "another --workdir" in loser[0]
    # Everything in the workdir is the winner's: its config, its results, its checkpoints only.
    lr = 4.0 if second and winner == 1 else 8.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["schedule"]["base_learning_rate"] == lr
    history = json.loads((tmp_path / "run" / "config_history.json").read_text())["invocations"]
    assert [h["from_step"] for h in history] == [0]
    results = strict_json(tmp_path / "run" / "results.json")
    assert results["final_step"] == 6 and results["resumed_from_step"] == 0 and results["config_changes"] == []
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["4", "6"]  # no *.orbax-checkpoint-tmp


HOLD = "import sys, time; from lars_jax import lock; held = lock.Lock(sys.argv[1]); print('held', flush=True); " \
       "time.sleep(600)"


def test_a_run_asked_to_wait_starts_when_the_holder_is_killed(tmp_path):
    (tmp_path / "run").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": helpers.ROOT})
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = helpers.start(tmp_path / "run", "--config.schedule.total_steps=2", "--wait_for_workdir", devices=8,
                             log_path=tmp_path / "log")
        helpers.wait_for(tmp_path / "log", f"is in use by another run (PID {holder.pid} on ", proc)
        time.sleep(1)
        assert proc.poll() is None and not os.path.exists(tmp_path / "run" / "config.json")  # waiting, untouched
        holder.send_signal(signal.SIGKILL)  # no code of the holder runs: the OS drops its lock
        assert proc.wait(timeout=300) == 0, (tmp_path / "log").read_text()[-2000:]
    finally:
        holder.kill()
    assert strict_json(tmp_path / "run" / "results.json")["final_step"] == 2


# --------------------------------------------------------------------- what a resume may change
def test_a_resume_that_changes_the_math_is_refused_and_a_deliberate_change_is_recorded(tmp_path):
    steps = ("--config.schedule.total_steps=6", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=6")
    first = run(tmp_path, *steps, "--config.loop.stop_after_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    saved = {n: (tmp_path / n).read_bytes() for n in ("config.json", "results.json")}

    refused = run(tmp_path, *steps, "--config.global_batch_size=128", "--config.schedule.base_learning_rate=4")
    line = assert_one_line_error(
        refused, "global_batch_size: 64 -> 128", "schedule.base_learning_rate: 8.0 -> 4.0", "new --workdir",
        # unset, the BatchNorm group follows the per-device batch: twice the batch, twice the group
        "model.bn_group_size: 8 -> 16 (unset, it follows the per-device batch; --config.model.bn_group_size=8 keeps it)",
        "--allow_config_change=global_batch_size,model.bn_group_size,schedule.base_learning_rate", code=EXIT_USAGE,
        alone=True)
    assert {n: (tmp_path / n).read_bytes() for n in saved} == saved, line  # nothing touched
    assert len(json.loads((tmp_path / "config_history.json").read_text())["invocations"]) == 1
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]

    # Deliberate: a learning rate from step 2 on; fields that change nothing need no flag.
    changed = run(tmp_path, *steps, "--config.loop.stop_after_steps=4", "--config.loop.log_every=2",
                  "--config.schedule.base_learning_rate=4", "--allow_config_change=schedule.base_learning_rate")
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert (tmp_path / "config.json").read_bytes() == saved["config.json"]  # the start's config, kept
    history = json.loads((tmp_path / "config_history.json").read_text())["invocations"]
    assert [(h["from_step"], h["changes"]) for h in history] == [(0, {}), (2, {
        "loop.stop_after_steps": [2, 4], "loop.log_every": [1, 2], "schedule.base_learning_rate": [8.0, 4.0]})]
    results = strict_json(tmp_path / "results.json")
    assert results["final_step"] == 4 and results["config_changes"] == [
        {"from_step": 2, "changes": {"schedule.base_learning_rate": [8.0, 4.0]}}]  # what changes the math

    # The run now goes on at LR 4: back to 8 is a change again.
    back = run(tmp_path, *steps, "--config.loop.log_every=2")
    assert_one_line_error(back, "schedule.base_learning_rate: 4.0 -> 8.0", code=EXIT_USAGE, alone=True)


def test_a_resume_on_another_device_count_keeps_the_math_or_is_refused(tmp_path):
    # LR 0.5: rounding differences of the all-reduce stay at float32 rounding (see test_distributed).
    steps = ("--config.schedule.total_steps=8", "--config.loop.checkpoint_every=4", "--config.loop.eval_every=8",
             "--config.schedule.base_learning_rate=0.5")
    ref = run(tmp_path / "ref", *steps, devices=4)
    assert ref.returncode == 0, ref.stderr[-2000:]
    first = run(tmp_path / "run", *steps, "--config.loop.stop_after_steps=4", devices=4)
    assert first.returncode == 0, first.stderr[-2000:]
    for devices, group in ((2, 32), (8, 8)):  # batch 64: 16 per device on 4 devices, BatchNorm over them
        proc = run(tmp_path / "run", *steps, devices=devices)
        assert_one_line_error(proc, f"model.bn_group_size: 16 -> {group} (unset, it follows the per-device batch: "
                                    f"4 devices then, {devices} now; --config.model.bn_group_size=16 keeps it)",
                              code=EXIT_USAGE, alone=True)
    pinned = run(tmp_path / "run", *steps, "--config.model.bn_group_size=16", devices=2)
    assert pinned.returncode == 0, pinned.stderr[-2000:]
    results = strict_json(tmp_path / "run" / "results.json")
    assert results["resumed_from_step"] == 4 and results["num_devices"] == 2 and results["config_changes"] == []
    a, b = checkpoints.read_checkpoint(tmp_path / "ref"), checkpoints.read_checkpoint(tmp_path / "run")
    assert int(a["step"]) == int(b["step"]) == 8
    diff = helpers.max_rel_diff(a["params"], b["params"])
    print(f"steps 5-8 on 2 devices vs 4: max relative param difference {diff:.2e}")
    # Same batches, same BatchNorm groups: only the order of the gradient sum over devices differs.
    assert diff < 1e-5


def test_every_field_a_resume_may_change_is_a_config_field_that_changes_no_number():
    from lars_jax import configs, resume

    fields = resume.flatten(configs.get_base_config().to_dict())
    assert set(resume.MAY_CHANGE) <= set(fields), sorted(set(resume.MAY_CHANGE) - set(fields))
    # what the math reads stays out: the data, the model, the optimizer, the schedule, the loss
    assert not [f for f in resume.MAY_CHANGE if f.split(".")[0] in ("data", "model", "optimizer", "schedule",
                                                                      "loss", "seed", "global_batch_size")]
    assert "loop.log_every_seconds" in resume.MAY_CHANGE  # console lines by time: what is logged


def test_failures_md_lists_exactly_the_fields_a_resume_may_change():
    from lars_jax import resume

    with open(os.path.join(helpers.ROOT, "docs", "failures.md")) as f:
        text = " ".join(f.read().split())
    listed = text.split("may change freely: ", 1)[1].split("(`MAY_CHANGE`", 1)[0]
    assert set(re.findall(r"`([\w.]+)`", listed)) == set(resume.MAY_CHANGE)
