"""The base ConfigDict every experiment starts from, and its validation.

An experiment file (`experiments/*.py`) calls `get_base_config()`, overrides fields and returns the
result from its own `get_config()`. `validate(config, ...)` runs before anything is compiled and
raises `ConfigError` (a ValueError) naming the field and the allowed values.
"""
from __future__ import annotations

import importlib.util
import math
import os

import ml_collections

from lars_jax.errors import ConfigError

OPTIMIZERS = ("lars", "lamb", "sgd", "nesterov")
DENOMINATORS = ("paper", "optax")
DECAYS = ("poly", "cosine", "step", "constant")
LR_SCALINGS = ("none", "linear", "sqrt")
WEIGHT_DECAY_MODES = ("l2", "decoupled")
DTYPES = ("float32", "bfloat16")


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "base"

    # Data.
    c.dataset = "fashion_mnist"  # fashion_mnist | cifar10 | imagenet2012 | synthetic
    c.data_dir = ml_collections.FieldReference(None, field_type=str)  # tfds data_dir; None = default
    c.augment = True  # random crop (+ flip where it makes sense) on the train split
    c.image_size = ml_collections.FieldReference(None, field_type=int)  # None = dataset default
    c.synthetic_num_classes = 1000  # only for dataset="synthetic"

    # Model.
    c.model = "small_cnn"
    c.dtype = "float32"  # activation / matmul dtype; params and optimizer state stay float32
    c.bn_group_size = ml_collections.FieldReference(None, field_type=int)  # None = per-device batch
    c.label_smoothing = 0.0
    c.resnet_variant = "v1.5"  # ResNets only: v1.5 (stride in the 3x3, MLPerf) or v1 (in the first 1x1)
    c.zero_init_last_bn = False  # ResNets only: zero the last BN scale of each residual block

    # Optimizer (see lars_jax.optim.make_optimizer).
    c.optimizer = "lars"
    c.base_learning_rate = 1.0  # peak LR at base_batch_size, scaled by lr_scaling
    c.base_batch_size = 256
    c.lr_scaling = "none"  # none | linear | sqrt: peak = base * f(global_batch / base_batch)
    c.warmup_epochs = 1.0
    c.warmup_init_learning_rate = 0.0  # warmup rises linearly from this LR to the peak
    c.decay = "poly"  # poly | cosine | step | constant
    c.poly_power = 2.0  # the paper's gamma_0 * (1 - t/T)^2
    c.end_learning_rate = 0.0
    c.step_decay_epochs = (30, 60, 80)  # Goyal et al.: x0.1 at epochs 30, 60, 80
    c.step_decay_factor = 0.1
    c.momentum = 0.9
    c.nesterov = False
    c.weight_decay = 5e-4
    c.weight_decay_mode = "l2"  # for sgd / nesterov: l2 (added to g) or decoupled
    c.trust_coefficient = 0.001  # eta in the paper
    c.eps = 0.0
    c.denominator = "paper"  # paper | optax
    c.b1 = 0.9  # LAMB only
    c.b2 = 0.999  # LAMB only
    c.adam_eps = 1e-6  # LAMB only

    # Schedule of the run.
    c.global_batch_size = 256
    c.num_epochs = 5.0
    c.total_steps = ml_collections.FieldReference(None, field_type=int)  # schedule length; overrides num_epochs
    # Stop after this many steps of the real schedule (warmup and decay unchanged), evaluate,
    # checkpoint and write results.json; rerunning with a larger value (or None) continues.
    c.stop_after_steps = ml_collections.FieldReference(None, field_type=int)
    c.mesh = ml_collections.ConfigDict({"model": 1})  # model > 1: split large dense kernels (Fig. 1b)
    c.microbatches = 1  # gradient accumulation: k pieces per device, one update per step
    c.microbatch_unroll = ml_collections.FieldReference(None, field_type=bool)  # None: unroll on CPU only
    c.seed = 0

    # Loop.
    c.log_every = 50  # steps between console/TensorBoard scalars
    c.layer_stats_every = 200  # steps between per-layer ||w||, ||g||, trust-ratio summaries; 0 = off
    c.eval_every = ml_collections.FieldReference(None, field_type=int)  # None = once per epoch
    c.checkpoint_every = ml_collections.FieldReference(None, field_type=int)  # None = once per epoch
    c.keep_checkpoints = ml_collections.FieldReference(2, field_type=int)  # newest N kept; None = all
    c.eval_batch_size = ml_collections.FieldReference(None, field_type=int)  # None = global batch
    return c


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


def _one_of(config, field: str, allowed) -> None:
    value = config[field]
    _require(value in allowed, field, f"got {value!r}; allowed values: {', '.join(map(repr, allowed))}")


def validate_optimizer(config) -> None:
    """Checks the fields `make_optimizer` reads."""
    _one_of(config, "optimizer", OPTIMIZERS)
    _one_of(config, "denominator", DENOMINATORS)
    _one_of(config, "decay", DECAYS)
    _one_of(config, "lr_scaling", LR_SCALINGS)
    _one_of(config, "weight_decay_mode", WEIGHT_DECAY_MODES)
    _require(config.base_learning_rate >= 0, "base_learning_rate",
             f"must be >= 0, got {config.base_learning_rate}")
    _require(config.end_learning_rate >= 0, "end_learning_rate",
             f"must be >= 0, got {config.end_learning_rate}")
    _require(config.base_batch_size > 0, "base_batch_size", f"must be > 0, got {config.base_batch_size}")
    _require(0 <= config.momentum < 1, "momentum", f"must lie in [0, 1), got {config.momentum}")
    _require(config.weight_decay >= 0, "weight_decay", f"must be >= 0, got {config.weight_decay}")
    _require(config.trust_coefficient > 0, "trust_coefficient",
             f"must be > 0, got {config.trust_coefficient}")
    _require(config.eps >= 0, "eps", f"must be >= 0, got {config.eps}")
    _require(config.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {config.warmup_epochs}")
    _require(config.warmup_init_learning_rate >= 0, "warmup_init_learning_rate",
             f"must be >= 0, got {config.warmup_init_learning_rate}")
    _require(config.poly_power > 0, "poly_power", f"must be > 0, got {config.poly_power}")
    _require(0 < config.step_decay_factor <= 1, "step_decay_factor",
             f"must lie in (0, 1], got {config.step_decay_factor}")
    _require(0 <= config.b1 < 1, "b1", f"must lie in [0, 1), got {config.b1}")
    _require(0 <= config.b2 < 1, "b2", f"must lie in [0, 1), got {config.b2}")


def validate(config, *, num_devices: int | None = None) -> None:
    """Raises ConfigError for a config that cannot work, before anything is built or compiled.

    num_devices: the global device count; when given, the batch must divide by
    (num_devices / mesh.model) * microbatches.
    """
    from lars_jax import data, models  # registries; imported lazily to keep this module light

    _require(config.dataset in data.DATASETS, "dataset",
             f"unknown dataset {config.dataset!r}; known: {', '.join(sorted(data.DATASETS))}")
    _require(config.model in models.MODELS, "model",
             f"unknown model {config.model!r}; known: {', '.join(sorted(models.MODELS))}")
    _one_of(config, "dtype", DTYPES)
    _one_of(config, "resnet_variant", ("v1", "v1.5"))
    validate_optimizer(config)
    _require(config.global_batch_size > 0, "global_batch_size",
             f"must be > 0, got {config.global_batch_size}")
    _require(config.microbatches >= 1, "microbatches", f"must be >= 1, got {config.microbatches}")
    _require(math.isfinite(config.num_epochs) and config.num_epochs > 0, "num_epochs",
             f"must be a finite number > 0, got {config.num_epochs}")
    for field in ("total_steps", "stop_after_steps", "log_every", "eval_every", "checkpoint_every", "eval_batch_size"):
        _require(config[field] is None or config[field] > 0, field, f"must be > 0 or None, got {config[field]}")
    _require(config.keep_checkpoints is None or config.keep_checkpoints >= 1, "keep_checkpoints",
             f"must be >= 1 (the newest N checkpoints are kept) or None (keep all), got "
             f"{config.keep_checkpoints}")
    _require(config.layer_stats_every >= 0, "layer_stats_every",
             f"must be >= 0 (0 = off), got {config.layer_stats_every}")
    _require(0 <= config.label_smoothing < 1, "label_smoothing",
             f"must lie in [0, 1), got {config.label_smoothing}")
    model = config.mesh.model
    _require(isinstance(model, int) and model >= 1, "mesh.model", f"must be an int >= 1, got {model!r}")
    if num_devices is not None:
        _require(num_devices % model == 0, "mesh.model", f"{model} does not divide the {num_devices} devices")
        num_devices //= model  # data-parallel workers
        per_step = num_devices * config.microbatches
        _require(config.global_batch_size % per_step == 0, "global_batch_size",
                 f"{config.global_batch_size} does not divide over {num_devices} devices x "
                 f"{config.microbatches} microbatches; use a multiple of {per_step} "
                 f"(e.g. {max(per_step, config.global_batch_size // per_step * per_step)})")
        eval_batch = config.eval_batch_size or config.global_batch_size
        _require(eval_batch % num_devices == 0, "eval_batch_size",
                 f"{eval_batch} does not divide over the {num_devices} data-parallel devices; use a "
                 f"multiple of {num_devices} (e.g. {max(num_devices, eval_batch // num_devices * num_devices)})")
        local = config.global_batch_size // per_step
        if config.bn_group_size is not None:
            _require(config.bn_group_size > 0 and local % config.bn_group_size == 0, "bn_group_size",
                     f"{config.bn_group_size} must divide the per-device microbatch of {local} "
                     f"examples (global_batch_size / devices / microbatches)")
