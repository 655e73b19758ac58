"""Where the config meets the library: models, optimizers and schedules built from their config
parts, the Trainer (mesh, data, model, optimizer, compiled steps), and `train_and_evaluate`, which
wires them to the workdir (lock, resume check, checkpoints) and runs lars_jax.loop.

Data flows one way: config -> (mesh, dataset, model, optimizer) -> train step -> loop ->
(metrics, checkpoints, results). Each room gets its own part of the config, or explicit
arguments; the rooms' own argument checks are the validation of their config values, reported here
as a ConfigError naming the field.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from lars_jax import (batching, configs, data, loop, models, optim, parallel, resume, schedules, steps,
                      workdir as workdirs)
from lars_jax.errors import ConfigError
from lars_jax.resume import flatten
from lars_jax.steps import TrainState


def _as_config_error(path: str, build: Callable, *args, fields: dict | None = None, **kwargs):
    """build(*args, **kwargs), its ValueError "arg: why" (or TypeError for an unknown keyword)
    raised again as ConfigError "config.<path>.<field>: why"; `fields` maps argument names to
    config field names where they differ."""
    try:
        return build(*args, **kwargs)
    except ValueError as e:
        arg, _, why = str(e).partition(": ")
        field = (fields or {}).get(arg, arg)
        raise ConfigError(f"config.{path}.{field}: {why}" if why else f"config.{path}: {e}") from e
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not unknown:
            raise
        raise ConfigError(f"config.{path}.{unknown[1]}: not an argument of {getattr(build, '__name__', build)}; "
                          f"remove it") from e


def bn_group_size(config, workers: int) -> int:
    """config.model.bn_group_size, or when None the per-device microbatch on `workers`
    data-parallel devices."""
    group = config.model.get("bn_group_size")
    return group if group is not None else batching.microbatch_size(config.global_batch_size, workers,
                                                                     config.mesh.microbatches)


def resolved_config(config, workers: int) -> dict:
    """The config as a JSON-able dict, with what the device count decides filled in
    (model.bn_group_size): what a resume must agree with."""
    resolved = workdirs.finite_or_none(json.loads(config.to_json_best_effort()))
    resolved["model"]["bn_group_size"] = bn_group_size(config, workers)
    return resolved


def build_model(config, info: data.DatasetInfo, workers: int):
    """config.model: `name` picks the registry entry, every other field is passed to it.
    workers: data-parallel devices (bn_group_size None = the per-device microbatch)."""
    options = {k: v for k, v in config.model.items() if k != "name"}
    options["bn_group_size"] = bn_group_size(config, workers)
    return _as_config_error("model", models.create_model, config.model.name, num_classes=info.num_classes, **options)


_SCHEDULE_ARGS = {"peak": "base_learning_rate", "warmup_steps": "warmup_epochs", "power": "poly_power",
                  "end": "end_learning_rate", "init": "warmup_init_learning_rate", "factor": "step_decay_factor",
                  "rule": "lr_scaling", "extra_decay_steps": "poly_extra_decay_steps"}


def batch_plan(config, num_train: int, *, workers: int = 1, processes: int = 1) -> batching.BatchPlan:
    """config (global_batch_size, schedule, mesh.microbatches, loop.stop_after_steps) on `workers`
    data-parallel devices fed by `processes` hosts, for a train split of num_train examples ->
    the run's batching.BatchPlan."""
    sc, batch = config.schedule, config.global_batch_size
    if batch > num_train:
        raise ConfigError(f"config.global_batch_size: {batch} exceeds the {num_train} training examples of "
                          f"{config.data.name}; an epoch drops its incomplete last batch")
    peak = _as_config_error("schedule", schedules.scaled_learning_rate, sc.base_learning_rate, batch,
                            base_batch_size=sc.base_batch_size, rule=sc.lr_scaling, fields=_SCHEDULE_ARGS)
    try:
        return batching.make_plan(
            num_train=num_train, global_batch=batch, workers=workers, processes=processes,
            microbatches=config.mesh.microbatches, num_epochs=sc.num_epochs, total_steps=sc.total_steps,
            warmup_epochs=sc.warmup_epochs, stop_after_steps=config.loop.stop_after_steps, peak_learning_rate=peak)
    except ValueError as e:
        arg, _, why = str(e).partition(": ")
        if arg == "warmup_epochs":
            raise ConfigError(f"config.schedule.warmup_epochs: {why}, or keep the schedule and stop early "
                              f"with config.loop.stop_after_steps=N instead of shortening "
                              f"config.schedule.total_steps") from e
        raise ConfigError(f"config.global_batch_size: {why}") from e


def build_schedule(config, plan: batching.BatchPlan) -> optax.Schedule:
    """config.schedule's shape (decay, power, end, init, step boundaries) over the plan's warmup,
    total steps and peak learning rate."""
    sc = config.schedule
    build = lambda f, *a, **k: _as_config_error("schedule", f, *a, fields=_SCHEDULE_ARGS, **k)  # noqa: E731
    peak, warmup, total = plan.peak_learning_rate, plan.warmup_steps, plan.total_steps
    init = sc.warmup_init_learning_rate
    if sc.decay == "poly":
        return build(schedules.warmup_poly, peak, warmup, total, power=sc.poly_power, end=sc.end_learning_rate,
                     init=init, extra_decay_steps=sc.poly_extra_decay_steps)
    if sc.decay == "cosine":
        return build(schedules.warmup_cosine, peak, warmup, total, end=sc.end_learning_rate, init=init)
    if sc.decay == "step":
        boundaries = tuple(batching.epochs_to_steps(e, plan.steps_per_epoch) for e in sc.step_decay_epochs)
        return build(schedules.warmup_step, peak, warmup, boundaries, factor=sc.step_decay_factor, init=init)
    if sc.decay == "constant":
        return build(schedules.warmup_constant, peak, warmup, init=init)
    raise ConfigError(f"config.schedule.decay: got {sc.decay!r}; allowed values: "
                      f"{', '.join(map(repr, schedules.DECAYS))}")


def build_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """config.optimizer: `name` picks lars_jax.optim.<name>, its part config.optimizer.<name>
    holds the keyword arguments."""
    name = config.optimizer.name
    if name not in optim.OPTIMIZERS:
        raise ConfigError(f"config.optimizer.name: got {name!r}; allowed values: "
                          f"{', '.join(map(repr, optim.OPTIMIZERS))}")
    return _as_config_error(f"optimizer.{name}", getattr(optim, name), schedule, **config.optimizer[name])


def layer_stats_kwargs(config) -> dict:
    """The trust ratio the per-layer statistics report: LARS's, with the config's LARS part."""
    lars = config.optimizer.lars
    return dict(weight_decay=lars.weight_decay, trust_coefficient=lars.trust_coefficient, eps=lars.eps,
                denominator=lars.denominator)


class Trainer:
    """Everything built once from a config: mesh, data info, model, optimizer, compiled steps."""

    # The config fields whose values shape the TrainState, or change what a checkpoint's arrays
    # mean: a workdir's checkpoints resume only a run that agrees on them.
    STATE_FIELDS = ("data.name", "data.image_size", "data.synthetic_num_classes", "model.name", "model.variant",
                    "optimizer.name")

    def __init__(self, config: ml_collections.ConfigDict, mesh=None, info: data.DatasetInfo | None = None,
                 compiler_options: dict | None = None):
        """info: the dataset's DatasetInfo; None reads it (and prepares the data) via data.get_info.
        compiler_options: XLA options of the train step (None: parallel.compiler_options())."""
        configs.validate(config, num_devices=mesh.size if mesh is not None else jax.device_count())
        self.mesh = mesh or parallel.make_mesh(model=config.mesh.model)
        self.config = config
        self.info = info or data.get_info(config.data)
        self.plan = batch_plan(config, self.info.num_train, workers=parallel.data_size(self.mesh),
                               processes=jax.process_count())
        self.schedule = build_schedule(config, self.plan)
        self.tx = build_optimizer(config, self.schedule)
        self.model = build_model(config, self.info, self.plan.workers)
        repl, batch = parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)
        self.state_sharding = parallel.state_shardings(jax.eval_shape(self.init_state), self.mesh)
        step = steps.make_train_step(
            self.model, self.tx, num_classes=self.info.num_classes, mesh=self.mesh,
            microbatches=config.mesh.microbatches, unroll=config.mesh.microbatch_unroll,
            label_smoothing=config.loss.label_smoothing, schedule=self.schedule,
            layer_stats=optim.layer_stats_fn(**layer_stats_kwargs(config)),
            layer_stats_every=config.loop.layer_stats_every, noise_scale_decay=config.loop.noise_scale_decay)
        self.measures_noise_scale = (config.loop.noise_scale_decay is not None
                                     and steps.noise_scale_measurable(self.mesh, config.mesh.microbatches))
        self.compiler_options = parallel.compiler_options() if compiler_options is None else compiler_options
        self.train_step = jax.jit(step, in_shardings=(self.state_sharding, batch), out_shardings=(
            self.state_sharding, repl), donate_argnums=0, compiler_options=self.compiler_options)
        self.eval_step = jax.jit(steps.make_eval_step(self.model, self.info.num_classes),
                                 in_shardings=(self.state_sharding, batch), out_shardings=repl)

    def init_state(self) -> TrainState:
        return steps.init_state(self.model, self.tx, self.info.image_shape, self.config.seed)

    def sharded_init_state(self) -> TrainState:
        return jax.jit(self.init_state, out_shardings=self.state_sharding)()

    def fingerprint(self) -> dict:
        """What a checkpoint must agree on to be resumed by this config (JSON-able)."""
        shapes = jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", jax.eval_shape(self.init_state))
        described = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(shapes)}
        digest = hashlib.sha256(repr(sorted(described.items())).encode()).hexdigest()[:16]
        fields = {f: self.config[f.split(".")[0]].get(f.split(".")[1]) for f in self.STATE_FIELDS}
        return {**fields, "state_shapes": digest}

    def abstract_batch(self) -> dict:
        """ShapeDtypeStructs of one global train batch, for jax.eval_shape / lowering."""
        b = self.config.global_batch_size
        return {"image": jax.ShapeDtypeStruct((b, *self.info.image_shape), jnp.float32),
                "label": jax.ShapeDtypeStruct((b,), jnp.int32)}

    def train_batches(self, start_step: int):
        it = data.train_iterator(self.config.data, seed=self.config.seed,
                                 local_batch_size=self.plan.per_process_batch, process_index=jax.process_index(),
                                 process_count=jax.process_count(), start_step=start_step)
        previous = None
        for batch in it:
            if batch is not previous:  # synthetic data repeats one batch: keep it on the devices
                previous, on_devices = batch, parallel.global_batch(batch, self.mesh)
            yield on_devices


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, allow_changes=(),
                       wait_for_workdir: bool = False) -> dict:
    """Trains from workdir's newest intact checkpoint to step `Trainer.plan.stop_step`, evaluates and
    writes results.json (strict JSON); returns the results.

    The config, the data and the workdir are checked before anything in the workdir is touched;
    then the workdir is locked for this run (lars_jax.lock: WorkdirBusyError naming the holder,
    or wait_for_workdir) and a resume is checked against the config the workdir was started with
    (lars_jax.resume: the fields `allow_changes` names may change the math). A workdir whose run
    already finished at that step is left as it is (its results returned). On SIGTERM (or the first
    SIGINT) it checkpoints the current step and returns results["preempted"] = True, with
    results["exit_code"] = EXIT_PREEMPTED (EXIT_INTERRUPTED); rerunning the same command resumes there.
    """
    from lars_jax import lock

    t_start = time.time()
    workdirs.check(workdir)
    trainer = Trainer(config)
    data.check(config.data)  # every split the run reads, before any training
    workdirs.prepare(workdir)
    holder = lock.hold_for_job(workdir, wait=wait_for_workdir)
    try:
        results = _resume_and_train(trainer, workdir, allow_changes)
        if results.pop("left_as_it_was", False):
            return results
        results["wall_seconds"] = time.time() - t_start
        if jax.process_index() == 0 and not results["preempted"]:
            workdirs.write_json(os.path.join(workdir, workdirs.RESULTS), workdirs.strict(results, {
                "test_accuracy": "no evaluation ran", "train_loss": "no train step ran and the checkpoint holds none",
                "images_per_second": "no timed train step (the first step of an invocation compiles)",
                "noise_scale": "not measured: config.loop.noise_scale_decay is None, or one data-parallel device "
                               "and one microbatch give one batch size (it needs two)"}))
        return results
    finally:  # after the last write: the next holder finds the workdir as this run left it
        if holder is not None:
            holder.release()


def _resume_and_train(trainer: Trainer, workdir: str, allow_changes) -> dict:
    """In a held workdir: the resume check, the restore, the loop (results without wall time)."""
    from lars_jax import checkpoints

    config, is_main = trainer.config, jax.process_index() == 0
    results_path = os.path.join(workdir, workdirs.RESULTS)
    record, fresh = resume.Record(workdir), not resume.started(workdir)
    resolved = resolved_config(config, trainer.plan.workers)
    changes = record.check(flatten(resolved), fresh=fresh, allowed=allow_changes, fixed=Trainer.STATE_FIELDS,
                           derived={"model.bn_group_size": config.model.get("bn_group_size")},
                           num_devices=trainer.mesh.size)
    logging.info("JAX %s: process %d of %d, %d local / %d global devices (%s)", jax.__version__, jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)
    ckpt = checkpoints.CheckpointManager(workdir, keep=config.loop.keep_checkpoints, fingerprint=trainer.fingerprint())
    try:
        state, progress = ckpt.restore_latest(trainer.sharded_init_state())
        start = int(jax.device_get(state.step))
        if is_main:
            record.keep_config(resolved, fresh=fresh)
        previous = workdirs.read_json(results_path)
        if start >= trainer.plan.stop_step and previous and previous.get("final_step") == start:
            logging.info("%s already holds the results of step %d (the run's last); left as they are. To train "
                         "further, raise config.loop.stop_after_steps, or lengthen the schedule (config.schedule."
                         "num_epochs / total_steps) with --allow_config_change naming the field.", workdir, start)
            return {**previous, "left_as_it_was": True}
        if is_main:
            record.append(from_step=start, changes=changes, num_devices=trainer.mesh.size,
                          num_processes=jax.process_count())
        if start:
            logging.info("Resumed from checkpoint step %d in %s", start, ckpt.directory)
        results = loop.run(trainer, state, start, ckpt, workdir, progress, is_main)
    finally:  # also on errors: finish checkpoint writes in flight so none is left half-written
        ckpt.close()
    return {**results, "config_changes": record.changes()}
