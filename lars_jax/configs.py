"""The base ConfigDict every experiment starts from, one part per room, and its validation.

An experiment file (`experiments/*.py`) calls `get_base_config()`, overrides fields and returns the
result from its own `get_config()`. Each room of the library reads only its part:

    config.data       the dataset (lars_jax.data)
    config.model      the network: `name` plus options passed to its constructor (lars_jax.models)
    config.loss       the training objective
    config.optimizer  `name` and one part per optimizer, passed as keyword arguments (lars_jax.optim)
    config.schedule   the learning-rate schedule and the run's length (lars_jax.schedules)
    config.mesh       how a step is laid out over devices (lars_jax.parallel, the train step)
    config.loop       logging, evaluation, checkpoints, early stop (the train loop)

plus `name`, `seed` and `global_batch_size`, which several rooms read. `validate(config, ...)` checks,
before anything is built or compiled, what no room checks for itself; the optimizer's and the
schedule's values are checked by building them (`lars_jax.train`), the library functions being the
one place that knows their valid ranges. Every failure is a ConfigError naming the field's path.
"""
from __future__ import annotations

import importlib.util
import math
import os

import ml_collections

from lars_jax import batching
from lars_jax.errors import ConfigError

DTYPES = ("float32", "bfloat16")

_int = lambda value=None: ml_collections.FieldReference(value, field_type=int)  # noqa: E731  None-able int


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"
    c.seed = 0
    c.global_batch_size = 256  # images per optimizer step, over all devices

    c.data = ml_collections.ConfigDict()
    c.data.name = "fashion_mnist"  # fashion_mnist | cifar10 | imagenet2012 | synthetic
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)  # tfds data_dir; None = default
    c.data.augment = True  # random crop (+ flip where it makes sense) on the train split
    c.data.image_size = _int()  # None = the dataset's own size
    c.data.synthetic_num_classes = 1000  # only for name="synthetic"
    c.data.synthetic_num_eval = 1024  # only for name="synthetic": examples its evaluation reads
    # > 0: the last N examples of the train split are a validation split (in-memory datasets),
    # trained on by no one; the loop evaluates it during training and both it and the eval split
    # at the end, so a choice (an LR, a checkpoint) can be made without the test set.
    c.data.validation_examples = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "small_cnn"  # a key of lars_jax.models.MODELS; the other fields go to its constructor
    c.model.dtype = "float32"  # activation / matmul dtype; params and optimizer state stay float32
    c.model.bn_group_size = _int()  # examples per BatchNorm group; None = the per-device microbatch

    c.loss = ml_collections.ConfigDict()
    c.loss.label_smoothing = 0.0

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "lars"  # lars | lamb | sgd: which part below is passed to lars_jax.optim.<name>
    # LARS (lars_jax.optim.lars): eta = trust_coefficient, beta = weight_decay
    c.optimizer.lars = ml_collections.ConfigDict(dict(
        momentum=0.9, nesterov=False, weight_decay=5e-4, trust_coefficient=0.001, eps=0.0, denominator="paper"))
    c.optimizer.lamb = ml_collections.ConfigDict(dict(b1=0.9, b2=0.999, eps=1e-6, weight_decay=5e-4))
    # momentum SGD, heavy ball or Nesterov; weight_decay_mode l2 (added to g) or decoupled (SGDW)
    c.optimizer.sgd = ml_collections.ConfigDict(dict(
        momentum=0.9, nesterov=False, weight_decay=5e-4, weight_decay_mode="l2"))

    c.schedule = ml_collections.ConfigDict()
    c.schedule.base_learning_rate = 1.0  # peak LR at base_batch_size, scaled by lr_scaling
    c.schedule.base_batch_size = 256
    c.schedule.lr_scaling = "none"  # none | linear | sqrt: peak = base * f(global_batch / base_batch)
    c.schedule.warmup_epochs = 1.0
    c.schedule.warmup_init_learning_rate = 0.0  # warmup rises linearly from this LR to the peak
    c.schedule.decay = "poly"  # poly | cosine | step | constant
    c.schedule.poly_power = 2.0  # the paper's gamma_0 * (1 - t/T)^2
    # poly: the decay spans total - warmup + this many steps; 1 = the MLPerf reference's length
    c.schedule.poly_extra_decay_steps = 0
    c.schedule.end_learning_rate = 0.0
    c.schedule.step_decay_epochs = (30, 60, 80)  # Goyal et al.: x0.1 at epochs 30, 60, 80
    c.schedule.step_decay_factor = 0.1
    c.schedule.num_epochs = 5.0  # the run's length, which the decay spans
    c.schedule.total_steps = _int()  # the run's length in steps; overrides num_epochs

    c.mesh = ml_collections.ConfigDict()
    c.mesh.model = 1  # > 1: split large dense kernels over a `model` axis of this size (Fig. 1b)
    c.mesh.microbatches = 1  # gradient accumulation: k pieces per device, one update per step
    c.mesh.microbatch_unroll = ml_collections.FieldReference(None, field_type=bool)  # None: unroll on CPU only

    c.loop = ml_collections.ConfigDict()
    # Stop after this many steps of the real schedule (warmup and decay unchanged), evaluate,
    # checkpoint and write results.json; rerunning with a larger value (or None) continues.
    c.loop.stop_after_steps = _int()
    c.loop.log_every = 50  # steps between console/TensorBoard scalars
    # Between them, a console line (not TensorBoard) after the first step and whenever this many
    # seconds passed since the last line; None = steps only.
    c.loop.log_every_seconds = ml_collections.FieldReference(15.0, field_type=float)
    c.loop.layer_stats_every = 200  # steps between per-layer ||w||, ||g||, trust-ratio summaries; 0 = off
    c.loop.eval_every = _int()  # None = once per epoch
    c.loop.eval_batch_size = _int()  # None = global_batch_size
    c.loop.checkpoint_every = _int()  # None = once per epoch
    c.loop.keep_checkpoints = _int(2)  # the newest N are kept; None = all
    # Gradient noise scale B_simple (McCandlish et al. 2018) from each step's two batch sizes, its
    # estimates averaged with this EMA decay; None = off. Needs > 1 data-parallel device or microbatch.
    c.loop.noise_scale_decay = ml_collections.FieldReference(0.99, field_type=float)
    return c


def merge(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """`config` with `overrides` (a nested dict mirroring its parts) merged in, part by part."""
    for key, value in overrides.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)) and isinstance(config.get(key), ml_collections.ConfigDict):
            merge(config[key], value)
        else:
            config[key] = value
    return config


def load_config(path: str) -> ml_collections.ConfigDict:
    """`get_config()` of the experiment file at `path`, for a file that builds on another row."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}: {message}")


def _one_of(value, field: str, allowed) -> None:
    _require(value in allowed, field, f"got {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def _positive_or_none(config, *fields) -> None:
    for field in fields:
        room, name = field.split(".")
        value = config[room][name]
        _require(value is None or value > 0, field, f"must be > 0 or None, got {value}")


def validate(config, *, num_devices: int | None = None) -> None:
    """Raises ConfigError for a config that cannot work, before anything is built or compiled.

    num_devices: the global device count; when given, the batch must divide by
    (num_devices / mesh.model) * mesh.microbatches, and the eval batch by the data-parallel devices.
    """
    from lars_jax import data, models, optim  # registries; imported lazily to keep this module light

    _one_of(config.data.name, "data.name", sorted(data.DATASETS))
    held = config.data.validation_examples
    _require(held == 0 or (held > 0 and data.DATASETS[config.data.name].supports_validation), "data.validation_examples",
             f"{held}: a validation split is held out of in-memory datasets only "
             f"({', '.join(n for n, d in sorted(data.DATASETS.items()) if d.supports_validation)}); use 0 for "
             f"{config.data.name}")
    _require(config.data.synthetic_num_eval > 0, "data.synthetic_num_eval",
             f"must be > 0, got {config.data.synthetic_num_eval}")
    _one_of(config.model.name, "model.name", sorted(models.MODELS))
    _one_of(config.model.dtype, "model.dtype", DTYPES)
    _one_of(config.optimizer.name, "optimizer.name", optim.OPTIMIZERS)
    _require(config.global_batch_size > 0, "global_batch_size", f"must be > 0, got {config.global_batch_size}")
    _require(0 <= config.loss.label_smoothing < 1, "loss.label_smoothing",
             f"must lie in [0, 1), got {config.loss.label_smoothing}")
    epochs = config.schedule.num_epochs
    _require(math.isfinite(epochs) and epochs > 0, "schedule.num_epochs", f"must be a finite number > 0, got {epochs}")
    _positive_or_none(config, "schedule.total_steps", "loop.stop_after_steps", "loop.log_every",
                      "loop.log_every_seconds", "loop.eval_every", "loop.checkpoint_every", "loop.eval_batch_size")
    keep = config.loop.keep_checkpoints
    _require(keep is None or keep >= 1, "loop.keep_checkpoints",
             f"must be >= 1 (the newest N checkpoints are kept) or None (keep all), got {keep}")
    decay = config.loop.noise_scale_decay
    _require(decay is None or 0 <= decay < 1, "loop.noise_scale_decay", f"must lie in [0, 1) or be None, got {decay}")
    _require(config.loop.layer_stats_every >= 0, "loop.layer_stats_every",
             f"must be >= 0 (0 = off), got {config.loop.layer_stats_every}")
    k, model = config.mesh.microbatches, config.mesh.model
    _require(isinstance(k, int) and k >= 1, "mesh.microbatches", f"must be an int >= 1, got {k!r}")
    _require(isinstance(model, int) and model >= 1, "mesh.model", f"must be an int >= 1, got {model!r}")
    if num_devices is None:
        return
    _require(num_devices % model == 0, "mesh.model", f"{model} does not divide the {num_devices} devices")
    workers = num_devices // model  # data-parallel
    per_step = workers * k
    batch = config.global_batch_size
    _require(batch % per_step == 0, "global_batch_size",
             f"{batch} does not divide over {workers} devices x {k} microbatches; use a multiple of "
             f"{per_step} (e.g. {max(per_step, batch // per_step * per_step)})")
    eval_batch = config.loop.eval_batch_size or batch
    _require(eval_batch % workers == 0, "loop.eval_batch_size",
             f"{eval_batch} does not divide over the {workers} data-parallel devices; use a multiple of "
             f"{workers} (e.g. {max(workers, eval_batch // workers * workers)})")
    group = config.model.get("bn_group_size")
    local = batching.microbatch_size(batch, workers, k)
    _require(group is None or (group > 0 and local % group == 0), "model.bn_group_size",
             f"{group} must divide the per-device microbatch of {local} examples "
             f"(global_batch_size / devices / microbatches)")
