"""What a sweep runs: its cells (optimizer x batch x LR multiplier x seed), their configs and order."""
from __future__ import annotations

import dataclasses
import hashlib
import math

import ml_collections

from lars_jax import batching, configs
from lars_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Cell:
    optimizer: str  # key in sweep.optimizers
    batch_size: int
    lr_multiplier: float
    seed: int
    config: ml_collections.ConfigDict = dataclasses.field(compare=False, hash=False)

    @property
    def name(self) -> str:
        digest = hashlib.sha1(self.config.to_json(sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.optimizer}_b{self.batch_size}_lrx{self.lr_multiplier:g}_s{self.seed}_{digest}"


def apply_quick(sweep: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The sweep with its `quick` overrides (a nested dict mirroring the sweep's fields) merged in."""
    sweep = configs.merge(ml_collections.ConfigDict(sweep.to_dict()), sweep.get("quick", {}))
    sweep.name = sweep.name + "_quick"
    return sweep


def optimizer_config(sweep, optimizer: str) -> ml_collections.ConfigDict:
    """The base config with one optimizer's overrides: what every cell of that optimizer shares."""
    return configs.merge(ml_collections.ConfigDict(sweep.base.to_dict()), sweep.optimizers[optimizer].overrides)


def cell_config(sweep, optimizer: str, batch_size: int, lr_multiplier: float, seed: int,
                num_train: int) -> ml_collections.ConfigDict:
    """The full config of one run: base, then the optimizer's overrides, then batch/seed/LR."""
    c = optimizer_config(sweep, optimizer)
    c.global_batch_size = batch_size
    c.seed = seed
    c.schedule.base_learning_rate = float(c.schedule.base_learning_rate) * float(lr_multiplier)
    spe = batching.steps_per_epoch(num_train, batch_size)
    total = batching.schedule_steps(spe, num_epochs=c.schedule.num_epochs, total_steps=c.schedule.total_steps)
    # About `log_points` logged points per run: TensorBoard curves (and LARS layer statistics,
    # logged at the same steps) without fetching every step's metrics.
    c.loop.log_every = max(1, total // sweep.log_points)
    c.loop.layer_stats_every = c.loop.log_every
    c.loop.checkpoint_every = 10**9  # only the final step: the sweep needs results, not resumable cells
    c.loop.keep_checkpoints = 1
    if batch_size in sweep.get("noise_scale_batch_sizes", ()):
        # pieces of one BN group each: the same math, and two batch sizes for the noise scale
        c.mesh.microbatches = sweep.noise_scale_microbatches
    elif sweep.get("max_microbatch_size") and batch_size > sweep.max_microbatch_size:
        # the same math in pieces (BN groups are fixed by bn_group_size), for the speed of small pieces
        c.mesh.microbatches = batch_size // sweep.max_microbatch_size
    c.name = f"{sweep.name}/{optimizer}_b{batch_size}_lrx{lr_multiplier:g}_s{seed}"
    return c


def check(sweep) -> None:
    """Raises ConfigError naming the sweep field that cannot work, before any cell runs (a mistake
    found at the last batch would otherwise cost the hours of every cell before it)."""
    def require(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"sweep.{field}: {why}")

    defined = ", ".join(map(repr, sweep.optimizers))
    require(len(sweep.optimizer_order) > 0, "optimizer_order", f"empty; list some of sweep.optimizers ({defined})")
    for o in sweep.optimizer_order:
        require(o in sweep.optimizers, "optimizer_order",
                f"{o!r} is not in sweep.optimizers ({defined}); list only those, or define sweep.optimizers.{o}")
        mults = tuple(sweep.optimizers[o].lr_multipliers)
        require(len(mults) > 0 and all(m > 0 for m in mults), f"optimizers.{o}.lr_multipliers",
                f"{mults}: give at least one multiplier of the rule's LR, each > 0 ((1.0,): the rule alone)")
    batches = tuple(sweep.batch_sizes)
    require(len(batches) > 0 and all(isinstance(b, int) and b > 0 for b in batches), "batch_sizes",
            f"{batches}: give one or more positive integers")
    require(len(sweep.seeds) > 0, "seeds", "empty; the first seed runs every cell and selects the LR, e.g. (0,)")
    unknown = sorted(set(sweep.extra_seed_batch_sizes) - {"ends"} - set(batches))
    require(not unknown, "extra_seed_batch_sizes",
            f"{unknown} not in sweep.batch_sizes {batches}; list some of those, or 'ends' (the smallest and largest)")
    require(sweep.base.data.validation_examples > 0, "base.data.validation_examples",
            "0, but the sweep selects every LR on a validation split, never on the test set; set it (e.g. 10000)")


def plan(sweep) -> list[tuple[str, int]]:
    """(optimizer, batch) pairs in run order: batch sizes ascending, optimizers as listed."""
    return [(opt, b) for b in sorted(sweep.batch_sizes) for opt in sweep.optimizer_order]


def extra_seed_batches(sweep) -> set[int]:
    """The batch sizes at which `extra_seeds` rerun the selected LR ("ends": smallest and largest)."""
    batches = set(sweep.extra_seed_batch_sizes)
    if "ends" in batches or not batches:
        return {min(sweep.batch_sizes), max(sweep.batch_sizes)} if sweep.extra_seeds else set()
    return batches


def selection_score(record: dict) -> float:
    """What picks the best LR trial: final validation accuracy (never the test set's); -1 for a
    diverged or missing result."""
    acc = record.get("validation_accuracy")
    return -1.0 if record.get("status") != "ok" or acc is None or not math.isfinite(acc) else acc
