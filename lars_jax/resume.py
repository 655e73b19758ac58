"""What a resume may change: the numbers of a workdir must mean one run.

A workdir records the resolved config it was started with in `config.json` (every field, the
BatchNorm group size resolved from the device count when the config leaves it unset) and every
invocation in `config_history.json` (from which step, on how many devices, which fields it
changed). A resume compares its resolved config with the workdir's (the start's, with each change
accepted since applied): the fields in MAY_CHANGE change nothing a run computes and pass; any
other difference is refused in one line listing `field: old -> new`, unless the user names the
field in --allow_config_change (a deliberate change, e.g. a longer schedule), which is recorded.
"""
from __future__ import annotations

import os
import time

from lars_jax import workdir as workdirs
from lars_jax.errors import ConfigError

CONFIG = "config.json"
HISTORY = "config_history.json"
ALLOW_FLAG = "--allow_config_change"

# field -> why changing it on resume changes nothing a run computes (every other field does).
MAY_CHANGE = {
    "name": "a label",
    "loop.stop_after_steps": "where this invocation stops; the schedule is the same",
    "loop.log_every": "what is logged",
    "loop.log_every_seconds": "what is logged",
    "loop.layer_stats_every": "what is logged",
    "loop.eval_every": "when the same state is evaluated",
    "loop.eval_batch_size": "how an evaluation's sums are batched (each example counted once)",
    "loop.checkpoint_every": "when checkpoints are written",
    "loop.keep_checkpoints": "how many checkpoints are kept",
    "mesh.model": "how the same step is laid out over the devices",
    "mesh.microbatch_unroll": "the same loop, unrolled or not",
}


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"schedule.warmup_epochs": 5.0, ...} from a nested config dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def started(workdir: str) -> bool:
    """Whether `workdir` holds numbers of a run: results.json or a checkpoint's step directory."""
    try:
        steps = [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()]
    except OSError:
        steps = []
    return bool(steps) or os.path.exists(os.path.join(workdir, workdirs.RESULTS))


class Record:
    """A workdir's config record: `config.json` (the start's resolved config) and the history."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        history = workdirs.read_json(os.path.join(workdir, HISTORY)) or {}
        self.invocations: list[dict] = list(history.get("invocations", []))
        # the start's config: config.json, or the history's copy of it if config.json was deleted
        self.started_with = workdirs.read_json(os.path.join(workdir, CONFIG)) or history.get("config")

    def reference(self) -> dict | None:
        """The flat config the workdir's numbers so far were computed with (None: unknown)."""
        if self.started_with is None:
            return None
        flat = flatten(self.started_with)
        for invocation in self.invocations:
            flat.update({field: new for field, (_, new) in invocation.get("changes", {}).items()})
        return flat

    def check(self, current: dict, *, fresh: bool, allowed=(), fixed=(), derived: dict | None = None,
              num_devices: int | None = None) -> dict:
        """{field: [old, new]} of the flat `current` config against the reference ({} when the
        workdir starts afresh); ConfigError (one line) for a change outside MAY_CHANGE that
        `allowed` does not name, or for an `allowed` name that is no field.

        fixed: fields no change of which a checkpoint survives (only a new workdir helps);
        derived: {field: value as set} for the fields resolved from the device count."""
        unknown = [f for f in allowed if f not in current]
        if unknown:
            raise ConfigError(f"{ALLOW_FLAG}: no config field {', '.join(map(repr, unknown))}; name fields as in "
                              f"--config.FIELD, e.g. schedule.total_steps (lars_jax/configs.py lists them)")
        reference, derived = self.reference(), derived or {}
        if fresh or reference is None:
            return {}
        changes = {f: [reference[f], v] for f, v in current.items() if f in reference and reference[f] != v
                   and not (f in derived and reference[f] is None)}  # None: a config.json of older code
        changes.update({f: [v, None] for f, v in reference.items() if f not in current})
        refused = [f for f in changes if f not in MAY_CHANGE and (f not in allowed or f in fixed)]
        if refused:
            raise ConfigError(self._refusal(refused, changes, fixed, derived, num_devices))
        return changes

    def _refusal(self, refused, changes, fixed, derived, num_devices) -> str:
        then = self.invocations[-1].get("num_devices") if self.invocations else None
        items = []
        for f in refused:
            old, new = changes[f]
            note = ""
            if f in fixed:
                note = " (the checkpoints' arrays do not fit it)"
            elif f in derived and derived[f] is None:
                where = f": {then or '?'} devices then, {num_devices} now" if then != num_devices else ""
                note = f" (unset, it follows the per-device batch{where}; --config.{f}={old} keeps it)"
            items.append(f"{f}: {old!r} -> {new!r}{note}")
        allowable = [f for f in refused if f not in fixed]
        way = (f", or add {ALLOW_FLAG}={','.join(allowable)} to change {'it' if len(allowable) == 1 else 'them'} "
               f"deliberately from the step it resumes at (recorded in {HISTORY})") if allowable else ""
        return (f"--workdir {self.workdir} was started with another config; resuming it with this one would change "
                f"what its numbers mean: {'; '.join(items)}. Use a new --workdir for this config{way}")

    def keep_config(self, config: dict, *, fresh: bool) -> None:
        """config.json: written when the workdir starts afresh (`fresh`: nothing to resume),
        rebuilt from the history (else from `config`) when it was deleted, otherwise left as the
        start's config."""
        if fresh or self.started_with is None:  # nothing recorded: this config is the start's
            self.started_with = config
            self.invocations = [] if fresh else self.invocations
        path = os.path.join(self.workdir, CONFIG)
        if fresh or not os.path.exists(path):
            workdirs.write_json(path, workdirs.finite_or_none(self.started_with))

    def append(self, *, from_step: int, changes: dict, num_devices: int, num_processes: int) -> None:
        """Records this invocation (after keep_config) in the history file."""
        self.invocations.append({"from_step": from_step, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                 "num_devices": num_devices, "num_processes": num_processes, "changes": changes})
        workdirs.write_json(os.path.join(self.workdir, HISTORY), workdirs.finite_or_none(
            {"config": self.started_with, "invocations": self.invocations}))

    def changes(self) -> list[dict]:
        """The changes of the math accepted so far: [{from_step, changes: {field: [old, new]}}] (the
        history has every difference, the MAY_CHANGE fields' too)."""
        accepted = [(i["from_step"], {f: v for f, v in i.get("changes", {}).items() if f not in MAY_CHANGE})
                    for i in self.invocations]
        return [{"from_step": step, "changes": changes} for step, changes in accepted if changes]

