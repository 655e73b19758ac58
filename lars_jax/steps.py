"""The TrainState and the jitted-step bodies: (state, batch) -> (state, metrics), no config.

`make_train_step` computes each device's gradient under `shard_map` over the mesh's `data` axis
(BatchNorm statistics and microbatches stay on the device), averages it with one `pmean` (the
step's single gradient all-reduce) and applies any optax transformation. Everything it needs is
an explicit argument, so it runs with the core install (jax, flax, optax) alone.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from lars_jax import batching, noise_scale, parallel


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # uint32[2] key data; dropout keys fold in the step, device and microbatch
    noise_scale: noise_scale.EmaState  # the gradient-noise-scale averages (zeros when not measured)


def init_state(model, tx: optax.GradientTransformation, image_shape, seed: int) -> TrainState:
    """Fresh TrainState; float32 params whatever the model's compute dtype."""
    init_key, dropout_key, state_key = jax.random.split(jax.random.key(seed), 3)
    variables = model.init({"params": init_key, "dropout": dropout_key},
                           jnp.zeros((2, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      rng=jax.random.key_data(state_key), noise_scale=noise_scale.ema_init())


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
    """Per-example softmax cross entropy in float32; logits [B, K], labels int [B] -> [B]."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing) \
        if label_smoothing else jax.nn.one_hot(labels, num_classes)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


NOISE_SCALE_SCOPE = "noise_scale"  # the name scope of the estimator's operations (profiles, HLO metadata)
OPTIMIZER_SCOPE = "optimizer"  # the name scope of the update (tx.update and apply_updates)


def default_unroll() -> bool:
    """Unroll the microbatch loop on CPU only: XLA's CPU backend runs a convolution's weight
    gradient inside a while loop about 100x slower than outside one (measured: 44 s against
    0.39 s for 4 microbatches of a 3x3 conv at batch 128), so there the k pieces are unrolled (peak
    memory then grows with k). On GPU/TPU the loop stays rolled and memory scales with the
    microbatch, not the global batch."""
    return jax.default_backend() == "cpu"


def noise_scale_measurable(mesh, microbatches: int) -> bool:
    """The step has two batch sizes to compare: several data-parallel devices or microbatches."""
    return parallel.data_size(mesh) > 1 or microbatches > 1


def _loss(model, num_classes: int, label_smoothing: float, params, batch_stats, images, labels, dropout_key):
    """Mean loss of one piece (images [b, H, W, C], labels [b]) and (its BN statistics, its count
    of correct answers)."""
    variables = {"params": params, "batch_stats": batch_stats}
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": dropout_key})
    loss = cross_entropy(logits, labels, num_classes, label_smoothing).mean()
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)
    return loss, (updates.get("batch_stats", {}), correct)


def _piece_grads(grad_fn, measure: bool, params, batch_stats, images, labels, key):
    """One piece's (grads, BN statistics, loss, correct, |grads|^2: 0 when not `measure`)."""
    (loss, (stats, correct)), grads = grad_fn(params, batch_stats, images, labels, key)
    with jax.named_scope(NOISE_SCALE_SCOPE):
        small_sq = noise_scale.sq_norm(grads) if measure else jnp.zeros((), jnp.float32)
    return grads, stats, loss, correct, small_sq


def _add_piece(piece, key, carry, xs):
    """lax.scan body: carry + piece i's sums; xs = (i, images [b/k, ...], labels [b/k])."""
    i, images, labels = xs
    return jax.tree.map(jnp.add, carry, piece(images, labels, jax.random.fold_in(key, i))), None


def device_grads(grad_fn, microbatches: int, unroll: bool, measure: bool, params, batch_stats, images, labels,
                 key):
    """On one device, under shard_map: its rows [b, ...] -> (gradient, BN statistics, loss, small
    |g|^2) averaged over the k pieces and then over devices (the pmean), and the global count of
    correct answers. grad_fn: value_and_grad of `_loss` over params."""
    axis, k = parallel.DATA_AXIS, microbatches
    key = jax.random.fold_in(key, jax.lax.axis_index(axis))
    piece = functools.partial(_piece_grads, grad_fn, measure, params, batch_stats)
    if k == 1:  # no loop at all: XLA compiles a plain step, with nothing to unroll or carry
        grads, stats, loss, correct, small_sq = piece(images, labels, key)
    else:
        zeros = jax.tree.map(jnp.zeros_like, (params, batch_stats, jnp.zeros((), jnp.float32),
                                              jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)))
        mb = lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:])  # noqa: E731
        (grads, stats, loss, correct, small_sq), _ = jax.lax.scan(
            functools.partial(_add_piece, piece, key), zeros, (jnp.arange(k), mb(images), mb(labels)), unroll=unroll)
    # check_vma=False: grad of the local loss is this device's gradient alone (with
    # check_vma=True JAX would already sum replicated params' cotangents over devices).
    grads, stats, loss, small_sq = jax.lax.pmean(jax.tree.map(lambda x: x / k, (grads, stats, loss, small_sq)), axis)
    return grads, stats, loss, jax.lax.psum(correct, axis), small_sq


def make_train_step(model, tx: optax.GradientTransformation, *, num_classes: int, mesh=None,
                    microbatches: int = 1, unroll: bool | None = None, label_smoothing: float = 0.0,
                    schedule: Callable | None = None, layer_stats: Callable | None = None, layer_stats_every: int = 0,
                    noise_scale_decay: float | None = None) -> Callable:
    """(state, batch) -> (state, metrics); batch {"image": [B, H, W, C], "label": [B]} global arrays.

    mesh: a lars_jax.parallel mesh (None: one device). microbatches = k cuts each device's rows
    into k contiguous pieces whose gradients and BatchNorm statistics a lax.scan averages before
    the all-reduce and the one optimizer update; unroll: that scan's (None: default_unroll()).
    metrics: loss, accuracy (train batch, means), grad_norm, param_norm, learning_rate (when
    `schedule` is given) and, every `layer_stats_every` steps (0: never), "layers":
    layer_stats(params, grads), a flat dict of scalars (e.g. optim.layer_stats_fn; zeros on other steps).

    noise_scale_decay: when set (and noise_scale_measurable), metrics["noise_scale"] holds
    noise_scale.step_update's estimates and averages from the step's two batch sizes: B_small =
    one microbatch when microbatches > 1, else one device's rows, whose squared gradient norms are
    averaged over pieces and devices (a scalar psum), and B_big = the global batch. Counted in
    examples: with BatchNorm, a group of g examples is the independent unit (module doc of noise_scale).
    """
    mesh = mesh or parallel.make_mesh(jax.devices()[:1])
    axis, k = parallel.DATA_AXIS, microbatches
    measure = noise_scale_decay is not None and noise_scale_measurable(mesh, k)
    grad_fn = jax.value_and_grad(functools.partial(_loss, model, num_classes, label_smoothing), has_aux=True)
    per_device = functools.partial(device_grads, grad_fn, k, default_unroll() if unroll is None else unroll, measure)
    # Manual over `data` only: a `model` axis stays automatic, so split kernels remain split.
    sharded_grads = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(axis), P(axis), P()),
                                  out_specs=P(), axis_names={axis}, check_vma=False)

    def train_step(state: TrainState, batch):
        images, labels = batch["image"], batch["label"]
        step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grads, batch_stats, loss, correct, small_sq = sharded_grads(state.params, state.batch_stats, images,
                                                                    labels, step_key)
        with jax.named_scope(OPTIMIZER_SCOPE):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        big_sq = noise_scale.sq_norm(grads)
        metrics = {"loss": loss, "accuracy": correct / labels.shape[0], "grad_norm": jnp.sqrt(big_sq),
                   # the loss is computed before the update: this catches a step that broke the params
                   "param_norm": optax.global_norm(params)}
        averages, b_big = state.noise_scale, labels.shape[0]
        if measure:
            with jax.named_scope(NOISE_SCALE_SCOPE):
                averages, metrics["noise_scale"] = noise_scale.step_update(
                    averages, small_sq, big_sq, batching.microbatch_size(b_big, parallel.data_size(mesh), k), b_big,
                    noise_scale_decay)
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        if layer_stats is not None and layer_stats_every:  # only on the steps that log them; zeros otherwise
            stats = functools.partial(layer_stats, state.params, grads)
            skip = lambda: jax.tree.map(jnp.zeros_like, jax.eval_shape(stats))  # noqa: E731
            metrics["layers"] = jax.lax.cond((state.step + 1) % layer_stats_every == 0, stats, skip)
        return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
                             noise_scale=averages), metrics

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
