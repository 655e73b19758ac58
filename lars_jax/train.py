"""TrainState, the jitted train/eval steps, and the training loop (metrics, checkpoints, resume).

The only room that joins config, mesh, data, model and optimizer. Data flows one way:
config -> (mesh, dataset, model, optimizer) -> train step -> loop -> (metrics, checkpoints).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import PartitionSpec as P

from lars_jax import configs, data, models, optim, parallel, schedules, workdir as workdirs
from lars_jax.errors import EXIT_PREEMPTED, UserError


class NonFiniteLossError(UserError, FloatingPointError):
    """Training diverged; the message names the step and the last good checkpoint."""


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # uint32[2] key data; dropout keys fold in the step, device and microbatch


def dtype_of(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def resolve_bn_group_size(config, num_devices: int) -> int:
    """config.bn_group_size, or the per-device microbatch when None (the paper: per worker)."""
    if config.bn_group_size is not None:
        return int(config.bn_group_size)
    return config.global_batch_size // (num_devices * config.microbatches)


def create_model(config, info: data.DatasetInfo, num_devices: int):
    """The config's model; num_devices: data-parallel workers (for the default BN group size)."""
    extra = {}
    if config.model.startswith("resnet"):
        extra = {"zero_init_last_bn": config.zero_init_last_bn}
        if config.model in ("resnet18", "resnet34", "resnet50", "resnet101"):
            extra["variant"] = config.resnet_variant
    return models.create_model(config.model, num_classes=info.num_classes, dtype=dtype_of(config.dtype),
                               bn_group_size=resolve_bn_group_size(config, num_devices), **extra)


def init_state(model, tx: optax.GradientTransformation, image_shape, seed: int) -> TrainState:
    """Fresh TrainState; float32 params whatever the model's compute dtype."""
    init_key, dropout_key, state_key = jax.random.split(jax.random.key(seed), 3)
    variables = model.init({"params": init_key, "dropout": dropout_key},
                           jnp.zeros((2, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      rng=jax.random.key_data(state_key))


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    """Per-example softmax cross entropy in float32; logits [B, K], labels int [B] -> [B]."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing) \
        if label_smoothing else jax.nn.one_hot(labels, num_classes)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def microbatch_unroll(config) -> bool:
    """Whether the microbatch loop is unrolled: config.microbatch_unroll, or by default on CPU only.

    XLA's CPU backend runs a convolution's weight gradient inside a while loop about 100x slower
    than outside one (measured: 44 s against 0.39 s for 4 microbatches of a 3x3 conv at batch
    128), so on CPU the k pieces are unrolled (peak memory then grows with k). On GPU/TPU the
    loop stays rolled and memory scales with the microbatch, not the global batch.
    """
    if config.microbatch_unroll is not None:
        return bool(config.microbatch_unroll)
    return jax.default_backend() == "cpu"


def make_train_step(model, tx: optax.GradientTransformation, config, *, num_classes: int, mesh=None,
                    schedule: Callable | None = None) -> Callable:
    """(state, batch) -> (state, metrics); batch {"image": [B, H, W, C], "label": [B]} global arrays.

    Gradients are computed per device under `shard_map` over the `data` axis of `mesh` (None: a
    1-device mesh), so BatchNorm statistics and microbatching stay inside a device, then averaged
    by one `pmean`: the step's single gradient all-reduce. With config.microbatches = k each
    device's rows are cut into k contiguous pieces whose gradients and BatchNorm statistics a
    lax.scan averages before that all-reduce and the one optimizer update.
    metrics: loss, accuracy (train batch, means), learning_rate, grad_norm and, when
    config.layer_stats_every > 0, per-tensor LARS diagnostics under "layers".
    """
    mesh = mesh or parallel.make_mesh(jax.devices()[:1])
    axis = parallel.DATA_AXIS
    k = config.microbatches
    unroll = microbatch_unroll(config)
    stats_kwargs = dict(weight_decay=config.weight_decay, trust_coefficient=config.trust_coefficient,
                        eps=config.eps, denominator=config.denominator)

    def loss_fn(params, batch_stats, images, labels, dropout_key):
        variables = {"params": params, "batch_stats": batch_stats}
        logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                      rngs={"dropout": dropout_key})
        loss = cross_entropy(logits, labels, num_classes, config.label_smoothing).mean()
        correct = jnp.sum(jnp.argmax(logits, -1) == labels)
        return loss, (updates.get("batch_stats", {}), correct)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def device_grads(params, batch_stats, images, labels, key):
        """On one device: its rows [b, ...] -> gradient, BN statistics, loss averaged over the
        k pieces and then over devices (the pmean), and the global count of correct answers."""
        key = jax.random.fold_in(key, jax.lax.axis_index(axis))
        mb = lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:])  # noqa: E731

        def body(carry, xs):
            i, imgs, labs = xs
            (loss, (stats, correct)), grads = grad_fn(params, batch_stats, imgs, labs, jax.random.fold_in(key, i))
            return jax.tree.map(jnp.add, carry, (grads, stats, loss, correct)), None

        if k == 1:  # no loop at all: XLA compiles a plain step, with nothing to unroll or carry
            (loss, (stats, correct)), grads = grad_fn(params, batch_stats, images, labels, key)
        else:
            zeros = jax.tree.map(jnp.zeros_like, (params, batch_stats, jnp.zeros((), jnp.float32),
                                                  jnp.zeros((), jnp.int32)))
            (grads, stats, loss, correct), _ = jax.lax.scan(body, zeros, (jnp.arange(k), mb(images), mb(labels)),
                                                            unroll=unroll)
        # check_vma=False: grad of the local loss is this device's gradient alone (with
        # check_vma=True JAX would already sum replicated params' cotangents over devices).
        grads, stats, loss = jax.lax.pmean(jax.tree.map(lambda x: x / k, (grads, stats, loss)), axis)
        return grads, stats, loss, jax.lax.psum(correct, axis)

    # Manual over `data` only: a `model` axis stays automatic, so split kernels remain split.
    sharded_grads = jax.shard_map(device_grads, mesh=mesh, in_specs=(P(), P(), P(axis), P(axis), P()),
                                  out_specs=P(), axis_names={axis}, check_vma=False)

    def train_step(state: TrainState, batch):
        images, labels = batch["image"], batch["label"]
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grads, batch_stats, loss, correct = sharded_grads(state.params, state.batch_stats, images, labels,
                                                          step_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "accuracy": correct / labels.shape[0], "grad_norm": optax.global_norm(grads),
                   # the loss is computed before the update: this catches a step that broke the params
                   "param_norm": optax.global_norm(params)}
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        if config.layer_stats_every:  # computed only on the steps that log them; zeros otherwise
            stats = lambda: optim.flatten_layer_stats(optim.layer_stats(state.params, grads, **stats_kwargs))  # noqa: E731
            skip = lambda: jax.tree.map(jnp.zeros_like, jax.eval_shape(stats))  # noqa: E731
            metrics["layers"] = jax.lax.cond((state.step + 1) % config.layer_stats_every == 0, stats, skip)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(model, num_classes: int) -> Callable:
    """(state, batch) -> sums {loss, correct, count} over real (mask == 1) examples."""

    def eval_step(state: TrainState, batch):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        logits = model.apply(variables, batch["image"], train=False)
        mask = batch["mask"]
        loss = cross_entropy(logits, batch["label"], num_classes)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        return {"loss": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}

    return eval_step


def evaluate(eval_step, state, config, mesh) -> dict[str, float]:
    """Top-1 accuracy and mean loss over the whole eval split (each example exactly once)."""
    eval_batch = config.eval_batch_size or config.global_batch_size
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for local in data.eval_iterator(config, local_batch_size=parallel.local_batch_size(eval_batch),
                                    process_index=jax.process_index(), process_count=jax.process_count()):
        sums = jax.device_get(eval_step(state, parallel.global_batch(local, mesh)))
        for name in totals:
            totals[name] += float(sums[name])
    count = max(totals["count"], 1.0)
    return {"test_accuracy": totals["correct"] / count, "test_loss": totals["loss"] / count,
            "test_examples": int(totals["count"])}


class Trainer:
    """Everything built once from a config: mesh, data info, model, optimizer, compiled steps."""

    # The config fields whose values shape the TrainState, or change what a checkpoint's arrays
    # mean: a workdir's checkpoints resume only a run that agrees on them.
    STATE_FIELDS = ("dataset", "image_size", "synthetic_num_classes", "model", "resnet_variant", "optimizer")

    def __init__(self, config: ml_collections.ConfigDict, mesh=None, info: data.DatasetInfo | None = None):
        """info: the dataset's DatasetInfo; None reads it (and prepares the data) via data.get_info."""
        configs.validate(config, num_devices=mesh.size if mesh is not None else jax.device_count())
        self.mesh = mesh or parallel.make_mesh(model=config.mesh.model)
        self.config = config
        self.info = info or data.get_info(config)
        if config.global_batch_size > self.info.num_train:
            raise configs.ConfigError(
                f"config.global_batch_size: {config.global_batch_size} exceeds the {self.info.num_train} "
                f"training examples of {config.dataset}; an epoch drops its incomplete last batch")
        self.steps_per_epoch = self.info.num_train // config.global_batch_size
        self.tx, self.schedule = optim.make_optimizer(config, self.steps_per_epoch)
        self.total_steps = schedules.total_steps(config, self.steps_per_epoch)
        self.stop_step = min(self.total_steps, config.stop_after_steps or self.total_steps)
        self.model = create_model(config, self.info, parallel.data_size(self.mesh))
        repl, batch = parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)
        self.state_sharding = parallel.state_shardings(jax.eval_shape(self.init_state), self.mesh)
        step = make_train_step(self.model, self.tx, config, num_classes=self.info.num_classes,
                               mesh=self.mesh, schedule=self.schedule)
        self.train_step = jax.jit(step, in_shardings=(self.state_sharding, batch), out_shardings=(
            self.state_sharding, repl), donate_argnums=0)
        self.eval_step = jax.jit(make_eval_step(self.model, self.info.num_classes),
                                 in_shardings=(self.state_sharding, batch), out_shardings=repl)

    def init_state(self) -> TrainState:
        return init_state(self.model, self.tx, self.info.image_shape, self.config.seed)

    def sharded_init_state(self) -> TrainState:
        return jax.jit(self.init_state, out_shardings=self.state_sharding)()

    def fingerprint(self) -> dict:
        """What a checkpoint must agree on to be resumed by this config (JSON-able)."""
        shapes = jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", jax.eval_shape(self.init_state))
        described = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(shapes)}
        digest = hashlib.sha256(repr(sorted(described.items())).encode()).hexdigest()[:16]
        return {**{f: self.config.get(f) for f in self.STATE_FIELDS}, "state_shapes": digest}

    def abstract_batch(self) -> dict:
        """ShapeDtypeStructs of one global train batch, for jax.eval_shape / lowering."""
        b = self.config.global_batch_size
        return {"image": jax.ShapeDtypeStruct((b, *self.info.image_shape), jnp.float32),
                "label": jax.ShapeDtypeStruct((b,), jnp.int32)}

    def train_batches(self, start_step: int):
        local = parallel.local_batch_size(self.config.global_batch_size)
        it = data.train_iterator(self.config, local_batch_size=local, process_index=jax.process_index(),
                                 process_count=jax.process_count(), start_step=start_step)
        previous = None
        for batch in it:
            if batch is not previous:  # synthetic data repeats one batch: keep it on the devices
                previous, on_devices = batch, parallel.global_batch(batch, self.mesh)
            yield on_devices


class PreemptionWatch:
    """Has SIGTERM (a preemption notice) arrived? In a multi-process run every process must stop
    at the same step, so JAX's preemption sync point decides; alone, a signal handler does."""

    def __init__(self):
        self._signalled = False
        self._multi = jax.process_count() > 1
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self._signalled = True

    def __call__(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils
            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled

    def close(self):
        if hasattr(self, "_previous"):
            signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains from workdir's newest intact checkpoint to step `Trainer.stop_step`, evaluates and
    writes results.json (strict JSON); returns the results.

    A workdir whose run already finished at that step is left as it is (its results returned).
    On SIGTERM it checkpoints the current step and returns results["preempted"] = True, with
    results["exit_code"] = EXIT_PREEMPTED (rerunning the same command resumes there).
    """
    from lars_jax import checkpoints

    t_start = time.time()
    workdirs.prepare(workdir)
    trainer = Trainer(config)
    is_main = jax.process_index() == 0
    results_path = os.path.join(workdir, workdirs.RESULTS)
    ckpt = checkpoints.CheckpointManager(workdir, keep=config.keep_checkpoints, fingerprint=trainer.fingerprint())
    try:
        state, progress = ckpt.restore_latest(trainer.sharded_init_state())
        start = int(jax.device_get(state.step))
        previous = workdirs.read_json(results_path)
        if start >= trainer.stop_step and previous and previous.get("final_step") == start:
            logging.info("%s already holds the results of step %d (the run's last); left as they are. "
                         "To train further, raise config.num_epochs / total_steps / stop_after_steps.",
                         workdir, start)
            return previous
        if is_main:
            workdirs.write_json(os.path.join(workdir, "config.json"), workdirs.strict(
                json.loads(config.to_json_best_effort())))
        if start:
            logging.info("Resumed from checkpoint step %d in %s", start, ckpt.directory)
        results = _train(trainer, state, start, ckpt, workdir, progress, is_main)
    finally:  # also on errors: finish checkpoint writes in flight so none is left half-written
        ckpt.close()
    results["wall_seconds"] = time.time() - t_start
    if is_main and not results["preempted"]:
        workdirs.write_json(results_path, workdirs.strict(results, {
            "test_accuracy": "no evaluation ran", "train_loss": "no train step ran and the checkpoint holds none",
            "images_per_second": "no timed train step (the first step of an invocation compiles)"}))
    return results


def _train(trainer: Trainer, state: TrainState, start: int, ckpt, workdir: str, progress: dict,
           is_main: bool) -> dict:
    """The loop from `start` to trainer.stop_step; returns the results dict (without wall time)."""
    from lars_jax import loop

    config, spe, stop = trainer.config, trainer.steps_per_epoch, trainer.stop_step
    eval_every, ckpt_every = config.eval_every or spe, config.checkpoint_every or spe
    meter = loop.Meter(config.global_batch_size, progress)
    report = loop.Reporter(workdir, is_main=is_main, total_steps=trainer.total_steps, steps_per_epoch=spe,
                           layer_stats_every=config.layer_stats_every)
    if start == 0:
        report.hparams(config.to_dict())
    logging.info("Training %s: steps %d to %d of %d (%d per epoch), global batch %d on %d devices in %d "
                 "processes", config.name, start, stop, trainer.total_steps, spe, config.global_batch_size,
                 trainer.mesh.size, jax.process_count())
    preempted = PreemptionWatch()
    pending: list[tuple[int, dict]] = []  # device-side metrics not yet fetched
    eval_metrics: dict = {}
    train_loss = progress.get("train_loss", math.nan)
    batches = trainer.train_batches(start)
    step, stopped = start, False
    try:
        while step < stop:
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, metrics = trainer.train_step(state, next(batches))
            step += 1
            pending.append((step, metrics))
            meter.stepped(block_on=state)
            stopped = preempted(step)
            last = step == stop
            evaluate_now, save_now = last or loop.due(step, eval_every), last or loop.due(step, ckpt_every)
            if not (stopped or evaluate_now or save_now or loop.due(step, config.log_every)):
                continue
            fetched = _check_finite(jax.device_get(pending), ckpt)  # before any checkpoint of them
            pending.clear()
            ips = meter.close_window()
            train_loss = report.train(fetched, ips, meter.eta(stop - step))["train_loss"]
            ckpt.check()
            if stopped:
                ckpt.save(step, state, meter.progress(train_loss=train_loss))
                ckpt.wait()
                logging.warning("SIGTERM: stopped at step %d/%d with a checkpoint in %s; run the same command "
                                "again to resume (exit code %d).", step, stop, ckpt.directory, EXIT_PREEMPTED)
                break
            if evaluate_now:
                eval_metrics = evaluate(trainer.eval_step, state, config, trainer.mesh)
                report.eval(step, eval_metrics)
            if save_now:
                ckpt.save(step, state, meter.progress(train_loss=train_loss))
            meter.restart_window()
        ckpt.wait()
        if not eval_metrics and not stopped:  # resumed at the last step: evaluate what was restored
            eval_metrics = evaluate(trainer.eval_step, state, config, trainer.mesh)
            report.eval(step, eval_metrics)
    finally:
        preempted.close()
        report.close()
    return {
        "config_name": config.name, "final_step": step, "total_steps": trainer.total_steps,
        "stop_step": stop, "finished": step == trainer.total_steps, "epochs": step / spe, "preempted": stopped,
        "exit_code": EXIT_PREEMPTED if stopped else 0,
        "test_accuracy": eval_metrics.get("test_accuracy"), "test_loss": eval_metrics.get("test_loss"),
        "test_examples": eval_metrics.get("test_examples"), "train_loss": train_loss,
        "train_seconds": meter.train_seconds, "compile_seconds": meter.compile_seconds,
        "images_per_second": meter.images_per_second(), "global_batch_size": config.global_batch_size,
        "num_devices": trainer.mesh.size, "num_processes": jax.process_count(), "resumed_from_step": start,
    }


def _check_finite(fetched, ckpt):
    for step, m in fetched:
        loss, norm = float(m["loss"]), float(m["param_norm"])
        if not (math.isfinite(loss) and math.isfinite(norm)):
            ckpt.wait()
            last = ckpt.latest_step()
            where = (f"the last good checkpoint is step {last} in {ckpt.directory}, left intact"
                     if last is not None else "no checkpoint was written yet")
            what = f"loss is {loss}" if not math.isfinite(loss) else f"the parameters' norm is {norm}"
            raise NonFiniteLossError(
                f"{what} at step {step}: training diverged; {where}. Lower config.base_learning_rate, "
                f"lengthen config.warmup_epochs, or check the data.")
    return fetched
