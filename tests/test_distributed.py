"""Distributed properties, each against an independent run: microbatching, multi-process, resume
after kill -9, SIGTERM, divergence guard, bf16, and the step's all-reduce bytes."""
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from helpers import max_rel_diff, run_steps, small_config
from lars_jax import checkpoints, data, parallel, train
from lars_jax import compiled_collectives as collectives
from lars_jax.errors import EXIT_PREEMPTED

FMNIST = data.DatasetInfo("fashion_mnist", 60000, 10000, (28, 28, 1), 10)


@pytest.mark.parametrize("unroll", [True, False])
def test_microbatches_4_equal_1_with_same_bn_groups(unroll):
    # 8 devices x 8 examples; with k = 4 each piece holds 2 examples per device. BN groups of 2
    # make the normalisation identical, so only float32 summation order differs.
    one, m1 = run_steps(small_config(model__bn_group_size=2, mesh__microbatches=1), 2)
    four, m4 = run_steps(small_config(model__bn_group_size=2, mesh__microbatches=4, mesh__microbatch_unroll=unroll),
                         2)
    diff = max_rel_diff(one.params, four.params)
    print(f"microbatches 4 vs 1 (unroll={unroll}): max relative param difference {diff:.2e}")
    assert diff < 1e-4
    assert max_rel_diff(one.batch_stats, four.batch_stats) < 1e-4
    np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)


def test_microbatch_memory_scales_with_the_piece_not_the_batch():
    # Rolled loop (the GPU/TPU default): temp memory of k=8 pieces of 16 ~ one batch of 16.
    sizes = {}
    for k in (1, 8):
        c = small_config(global_batch_size=16 * 8 * k, mesh__microbatches=k, mesh__microbatch_unroll=False)
        trainer = train.Trainer(c, info=FMNIST)
        assert trainer.plan.microbatch_size == 16
        compiled = trainer.train_step.lower(jax.eval_shape(trainer.init_state), trainer.abstract_batch()).compile()
        sizes[k] = compiled.memory_analysis().temp_size_in_bytes
    print(f"temp bytes: k=1 {sizes[1]:,}, k=8 (8x the batch) {sizes[8]:,}")
    assert sizes[8] < 1.5 * sizes[1]


@pytest.mark.parametrize("k,noise_scale", [(1, None), (4, None), (1, 0.99), (4, 0.99)])
def test_one_gradient_all_reduce_per_step(k, noise_scale):
    c = small_config(global_batch_size=256, mesh__microbatches=k, loop__noise_scale_decay=noise_scale)
    trainer = train.Trainer(c, info=FMNIST)
    report = collectives.all_reduce_report(trainer)
    print(report)
    # gradient bytes + BatchNorm running statistics + the loss and the count of correct answers,
    # + the noise scale's one scalar (the devices' squared gradient norm): nothing per microbatch
    assert report["all_reduce_bytes_in_loops"] == 0
    scalars = 4 + 4 + (4 if noise_scale else 0)
    assert report["all_reduce_bytes"] == report["gradient_bytes"] + report["batch_stats_bytes"] + scalars


def test_bfloat16_trains_and_keeps_float32_params():
    trainer = train.Trainer(small_config(model__dtype="bfloat16", schedule__base_learning_rate=1.0,
                                         schedule__total_steps=12, global_batch_size=128))
    state = trainer.sharded_init_state()
    batches = trainer.train_batches(0)
    losses = []
    for _ in range(12):
        state, metrics = trainer.train_step(state, next(batches))
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state)} <= {jnp.dtype("float32"), jnp.dtype("int32")}


@pytest.mark.slow  # subprocesses
def test_divergence_stops_with_step_and_intact_checkpoint(tmp_path):
    # warmup starts at LR 0, so step 1 leaves the params as they were and is checkpointed; step 2's
    # LR of 5e29 breaks them.
    proc = helpers.run(tmp_path, "--config.schedule.total_steps=12", "--config.loop.checkpoint_every=1",
                          "--config.schedule.base_learning_rate=1e30", "--config.schedule.warmup_epochs=0.0022", devices=2,
                          timeout=240)
    assert proc.returncode != 0
    msg = proc.stderr
    assert "training diverged" in msg and "at step 2" in msg and "Traceback" not in msg
    saved = checkpoints.read_checkpoint(tmp_path)
    assert f"last good checkpoint is step {int(saved['step'])}" in msg
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(saved["params"]))


@pytest.mark.slow  # subprocesses
def test_two_processes_equal_one_process_four_devices(tmp_path):
    # LR 0.5, not the config's 8: without warmup, LR 8 grows the all-reduce's rounding (1e-7 after
    # step 1) to ~1e-4 by step 3 through the BatchNorm parameters' plain-SGD steps; at 0.5 it stays
    # ~1.5e-7, so the bound below tests the data sharding and the gradient, not the dynamics' chaos.
    overrides = ("--config.schedule.total_steps=3", "--config.model.bn_group_size=8", "--config.loop.eval_every=3",
                 "--config.schedule.base_learning_rate=0.5")
    ref = helpers.run(tmp_path / "one", *overrides, devices=4)
    assert ref.returncode == 0, ref.stderr[-2000:]
    port = helpers.free_port()
    procs = [helpers.start(tmp_path / "two", *overrides, *helpers.multiprocess_flags(port, 2, i),
                              devices=2, log_path=tmp_path / f"log{i}") for i in range(2)]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0], (tmp_path / "log0").read_text()[-2000:] + (tmp_path / "log1").read_text()[-2000:]
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["num_processes"] == 2 and results["num_devices"] == 4
    a, b = checkpoints.read_checkpoint(tmp_path / "one"), checkpoints.read_checkpoint(tmp_path / "two")
    assert int(a["step"]) == int(b["step"]) == 3
    diff = max_rel_diff(a["params"], b["params"])
    print(f"2 processes x 2 devices vs 1 x 4: max relative param difference {diff:.2e}")
    assert diff < 1e-5  # the same devices and groups; only the all-reduce (gloo vs in-process) order may differ


@pytest.mark.slow  # subprocesses
def test_kill_9_then_rerun_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    overrides = ("--config.schedule.total_steps=14", "--config.loop.checkpoint_every=2", "--config.loop.eval_every=14",
                 "--config.data.augment=True")
    ref = helpers.run(tmp_path / "ref", *overrides, devices=2)
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = helpers.start(tmp_path / "run", *overrides, devices=2, log_path=tmp_path / "log")
    try:
        deadline = time.time() + 240
        while "step 7/" not in (tmp_path / "log").read_text():
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    # The workdir's lock file still names the killed holder; the OS dropped its lock with it.
    assert json.loads((tmp_path / "run" / "lock").read_text())["pid"] == proc.pid
    rerun = helpers.run(tmp_path / "run", *overrides, devices=2)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 < results["resumed_from_step"] < 14
    a, b = checkpoints.read_checkpoint(tmp_path / "ref"), checkpoints.read_checkpoint(tmp_path / "run")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # subprocesses
def test_sigterm_writes_a_checkpoint_and_exits_75(tmp_path):
    overrides = ("--config.schedule.total_steps=100000", "--config.loop.checkpoint_every=100000", "--config.loop.eval_every=100000")
    proc = helpers.start(tmp_path / "run", *overrides, devices=2, log_path=tmp_path / "log")
    try:
        deadline = time.time() + 240
        while "step 4/" not in (tmp_path / "log").read_text():
            assert time.time() < deadline and proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    log = (tmp_path / "log").read_text()
    assert code == EXIT_PREEMPTED, log[-2000:]  # checkpointed, not finished: a retry loop reruns it
    assert "SIGTERM: stopped at step" in log
    stopped = int(log.split("SIGTERM: stopped at step ")[1].split("/")[0])
    assert stopped >= 4 and int(checkpoints.read_checkpoint(tmp_path / "run")["step"]) == stopped
    assert not os.path.exists(tmp_path / "run" / "results.json")


def test_all_reduce_parser_finds_collectives_inside_loops():
    mesh = parallel.make_mesh()

    def per_device(x):  # x [k, n] on each device: one psum per loop iteration
        return jax.lax.scan(lambda c, xi: (c + jax.lax.psum(xi, "data"), None), jnp.zeros(x.shape[1]), x)[0]

    f = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=jax.sharding.PartitionSpec(None, "data"),
                              out_specs=jax.sharding.PartitionSpec("data"), check_vma=False))
    hlo = f.lower(jax.ShapeDtypeStruct((4, 8 * 256), jnp.float32)).compile().as_text()
    found = collectives.all_reduces(hlo)
    assert found and all(in_loop for _, in_loop in found)
    assert sum(b for b, _ in found) == 256 * 4


def test_model_axis_splits_dense_kernels_and_matches_one_device():
    config = small_config(model__bn_group_size=8)
    one, _ = run_steps(config, 3, jax.devices()[:1])
    config.mesh.model = 2  # 4 data-parallel workers x 2-way split of fc1's kernel
    trainer = train.Trainer(config)
    assert dict(trainer.mesh.shape) == {"data": 4, "model": 2}
    assert (trainer.plan.workers, trainer.plan.per_device_batch) == (4, 16)  # the model axis feeds no batch
    state = trainer.sharded_init_state()
    assert state.params["fc1"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")
    assert state.params["conv1"]["kernel"].sharding.is_fully_replicated
    batches = trainer.train_batches(0)
    for _ in range(3):
        state, _ = trainer.train_step(state, next(batches))
    assert state.params["fc1"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")
    diff = max_rel_diff(one.params, jax.device_get(state.params))
    print(f"model axis 2 x data 4 vs 1 device: max relative param difference {diff:.2e}")
    assert diff < 1e-4
