"""A run's batch arithmetic, computed once (big_vision's `u.steps`): how the global batch B splits
over processes, data-parallel devices and microbatches, and how the schedule's epochs become steps.

An epoch is num_train // B steps (each epoch drops its incomplete last batch: lars_jax.data.indexing);
an epoch count becomes steps by rounding epochs * steps_per_epoch. Plain integers, no config:
lars_jax.train builds the run's BatchPlan from the config, and everything else reads that plan.
"""
from __future__ import annotations

import dataclasses


def steps_per_epoch(num_train: int, global_batch: int) -> int:
    """Updates per pass over `num_train` examples at global batch B (the last partial batch dropped)."""
    if global_batch > num_train:
        raise ValueError(f"global batch {global_batch} exceeds the {num_train} train examples")
    return num_train // global_batch


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return round(epochs * steps_per_epoch)


def schedule_steps(steps_per_epoch: int, *, num_epochs: float, total_steps: int | None = None) -> int:
    """The schedule's length: total_steps when set, else num_epochs of steps (at least 1)."""
    if total_steps is not None:
        return int(total_steps)
    return max(1, epochs_to_steps(num_epochs, steps_per_epoch))


def microbatch_size(global_batch: int, workers: int, microbatches: int = 1) -> int:
    """Examples in one microbatch: B / (data-parallel devices x microbatches per device), the rows
    one device's forward pass sees at a time (and the default BatchNorm group)."""
    return global_batch // (workers * microbatches)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """The batch and step counts of one run; every count in examples or optimizer steps."""

    global_batch: int  # B: examples per update (the paper's batch size)
    processes: int  # hosts feeding data; each reads B / processes examples per step
    workers: int  # data-parallel devices
    microbatches: int  # k: pieces per device whose gradients one update averages
    steps_per_epoch: int
    total_steps: int  # the schedule's length
    warmup_steps: int
    stop_step: int  # where this invocation stops (<= total_steps: config.loop.stop_after_steps)
    peak_learning_rate: float  # eta after warmup, with the batch-size scaling rule applied

    @property
    def per_process_batch(self) -> int:
        return self.global_batch // self.processes

    @property
    def per_device_batch(self) -> int:
        return self.global_batch // self.workers

    @property
    def microbatch_size(self) -> int:
        return microbatch_size(self.global_batch, self.workers, self.microbatches)

    def epochs(self, step: int) -> float:
        return step / self.steps_per_epoch

    def as_dict(self) -> dict:
        """The fields and the derived batch sizes (JSON-able), as results.json records them."""
        return {**dataclasses.asdict(self), "per_process_batch": self.per_process_batch,
                "per_device_batch": self.per_device_batch, "microbatch_size": self.microbatch_size}


def make_plan(*, num_train: int, global_batch: int, workers: int = 1, processes: int = 1, microbatches: int = 1,
              num_epochs: float, total_steps: int | None = None, warmup_epochs: float = 0.0,
              stop_after_steps: int | None = None, peak_learning_rate: float) -> BatchPlan:
    """The BatchPlan; ValueError "argument: why" when B does not split over processes, devices and
    microbatches, or warmup is longer than the schedule."""
    for parts, over in ((processes, f"{processes} processes"),
                        (workers * microbatches, f"{workers} devices x {microbatches} microbatches")):
        if global_batch % parts:
            raise ValueError(f"global_batch: {global_batch} does not divide over {over}")
    spe = steps_per_epoch(num_train, global_batch)
    total = schedule_steps(spe, num_epochs=num_epochs, total_steps=total_steps)
    warmup = epochs_to_steps(warmup_epochs, spe)
    if warmup > total:
        raise ValueError(f"warmup_epochs: {warmup_epochs} epochs = {warmup} steps is longer than training "
                         f"({total} steps); use warmup_epochs <= {total / spe:g}")
    return BatchPlan(global_batch=global_batch, processes=processes, workers=workers, microbatches=microbatches,
                     steps_per_epoch=spe, total_steps=total, warmup_steps=warmup,
                     stop_step=min(total, stop_after_steps or total), peak_learning_rate=float(peak_learning_rate))
