"""TrainState, the jitted train/eval steps, and the training loop (metrics, checkpoints, resume).

The only room that joins config, mesh, data, model and optimizer. Data flows one way:
config -> (mesh, dataset, model, optimizer) -> train step -> loop -> (metrics, checkpoints).
"""
from __future__ import annotations

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

from lars_jax import configs, data, models, optim, parallel, schedules


class NonFiniteLossError(FloatingPointError):
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

    def __init__(self, config: ml_collections.ConfigDict, mesh=None, info: data.DatasetInfo | None = None):
        """info: the dataset's DatasetInfo; None reads it (and prepares the data) via data.get_info."""
        self.mesh = mesh or parallel.make_mesh(model=config.mesh.model)
        configs.validate(config, num_devices=self.mesh.size)
        self.config = config
        self.info = info or data.get_info(config)
        if config.global_batch_size > self.info.num_train:
            raise configs.ConfigError(
                f"config.global_batch_size: {config.global_batch_size} exceeds the {self.info.num_train} "
                f"training examples of {config.dataset}; an epoch drops its incomplete last batch")
        self.steps_per_epoch = self.info.num_train // config.global_batch_size
        self.tx, self.schedule = optim.make_optimizer(config, self.steps_per_epoch)
        self.total_steps = schedules.total_steps(config, self.steps_per_epoch)
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


def _every(value, default: int) -> int:
    return int(value) if value else default


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
    """Trains (resuming from workdir's latest checkpoint), evaluates, writes results.json.

    Returns the results dict; on SIGTERM it checkpoints the current step and returns early with
    results["preempted"] = True (rerunning the same command resumes there).
    """
    from clu import metric_writers, periodic_actions

    from lars_jax import checkpoints

    t_start = time.time()
    trainer = Trainer(config)
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    ckpt = checkpoints.CheckpointManager(workdir, keep=config.keep_checkpoints)
    state = ckpt.restore_latest(trainer.sharded_init_state())
    start_step = int(jax.device_get(state.step))
    if start_step:
        logging.info("Resumed from checkpoint at step %d in %s", start_step, ckpt.directory)

    total = trainer.total_steps
    spe = trainer.steps_per_epoch
    eval_every = _every(config.eval_every, spe)
    ckpt_every = _every(config.checkpoint_every, spe)
    log_every = config.log_every
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main, asynchronous=True)
    if start_step == 0:
        writer.write_hparams({k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})
    progress = periodic_actions.ReportProgress(num_train_steps=total, writer=writer, every_steps=log_every)
    preempted = PreemptionWatch()
    logging.info("Training %s: %d steps (%d per epoch), global batch %d on %d devices in %d processes",
                 config.name, total, spe, config.global_batch_size, trainer.mesh.size, jax.process_count())
    if trainer.mesh.shape[parallel.MODEL_AXIS] > 1:
        logging.info("Mesh %s: dense kernels of >= %d elements split over 'model'", dict(trainer.mesh.shape),
                     parallel.MIN_MODEL_SHARDED_SIZE)

    pending: list[tuple[int, dict]] = []  # device-side metrics not yet fetched
    eval_metrics: dict = {}
    train_loss = float("nan")
    window_start, window_steps = time.time(), 0
    images_seen, train_seconds, compile_seconds = 0, 0.0, 0.0
    batches = trainer.train_batches(start_step)
    step = start_step
    stopped_early = False
    try:
        while step < total:
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                state, metrics = trainer.train_step(state, next(batches))
            step += 1
            pending.append((step, metrics))
            progress(step)
            if step == start_step + 1:  # the first step compiles: keep it out of images/s
                jax.block_until_ready(state)
                compile_seconds = time.time() - window_start
                window_start = time.time()
            else:
                window_steps += 1
            stopped_early = preempted(step)
            last = step == total
            if not (step % log_every == 0 or last or stopped_early or step % ckpt_every == 0
                    or step % eval_every == 0):
                continue
            fetched = _check_finite(jax.device_get(pending), ckpt)  # before any checkpoint of them
            pending.clear()
            elapsed = time.time() - window_start
            ips = window_steps * config.global_batch_size / max(elapsed, 1e-9)
            images_seen += window_steps * config.global_batch_size
            train_seconds += elapsed
            train_loss = float(np.mean([m["loss"] for _, m in fetched]))
            scalars = {"train_loss": train_loss,
                       "train_accuracy": float(np.mean([m["accuracy"] for _, m in fetched])),
                       "learning_rate": float(fetched[-1][1]["learning_rate"]),
                       "grad_norm": float(fetched[-1][1]["grad_norm"]),
                       "param_norm": float(fetched[-1][1]["param_norm"]), "images_per_second": ips}
            writer.write_scalars(step, scalars)
            if config.layer_stats_every and any(s % config.layer_stats_every == 0 for s, _ in fetched):
                s, m = next((s, m) for s, m in reversed(fetched) if s % config.layer_stats_every == 0)
                writer.write_scalars(s, {f"layers/{k}": float(v) for k, v in m["layers"].items()})
            eta = (total - step) * elapsed / window_steps if window_steps else float("nan")
            logging.info("step %d/%d  loss %.4f  acc %.3f  lr %.4g  %.0f img/s  ETA %s", step, total, train_loss,
                         scalars["train_accuracy"], scalars["learning_rate"], ips, _hms(eta))
            if stopped_early:
                ckpt.save(step, state)
                ckpt.wait()
                logging.warning("SIGTERM: stopped at step %d/%d and wrote a checkpoint to %s; run the same "
                                "command again to resume.", step, total, ckpt.directory)
                break
            if step % eval_every == 0 or last:
                eval_metrics = evaluate(trainer.eval_step, state, config, trainer.mesh)
                writer.write_scalars(step, {k: v for k, v in eval_metrics.items() if k != "test_examples"})
                logging.info("eval at step %d (epoch %.2f): accuracy %.4f  loss %.4f", step, step / spe,
                             eval_metrics["test_accuracy"], eval_metrics["test_loss"])
            if step % ckpt_every == 0 or last:
                ckpt.save(step, state)
            window_start, window_steps = time.time(), 0
        ckpt.wait()
        if not eval_metrics and not stopped_early:  # resumed at the end: evaluate what was restored
            eval_metrics = evaluate(trainer.eval_step, state, config, trainer.mesh)
    finally:  # also on errors: finish checkpoint writes in flight so none is left half-written
        preempted.close()
        ckpt.wait()
        ckpt.close()
        writer.flush()
        writer.close()
    results = {
        "config_name": config.name, "final_step": step, "total_steps": total, "epochs": step / spe,
        "preempted": stopped_early,
        "test_accuracy": eval_metrics.get("test_accuracy"), "test_loss": eval_metrics.get("test_loss"),
        "test_examples": eval_metrics.get("test_examples"), "train_loss": train_loss,
        "wall_seconds": time.time() - t_start, "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "images_per_second": images_seen / train_seconds if train_seconds else float("nan"),
        "global_batch_size": config.global_batch_size, "num_devices": trainer.mesh.size,
        "num_processes": jax.process_count(), "resumed_from_step": start_step,
    }
    if is_main and not stopped_early:
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


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


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
