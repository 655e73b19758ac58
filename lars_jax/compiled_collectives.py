"""What a compiled train step communicates: the all-reduces in its optimised HLO and their bytes.

Synchronous data parallelism should all-reduce the gradient once per step (plus the BatchNorm
running statistics and a few scalars), however many microbatches the step accumulates.
"""
from __future__ import annotations

import math
import re

import jax

_BYTES = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s64": 8, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1}
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_ALL_REDUCE = re.compile(r"=\s*(.+?)\s+all-reduce(?:-start)?\(")
_CALLS = re.compile(r"(?:body|condition|to_apply|calls|branch_computations)=\{?%?([\w.\-]+(?:, %?[\w.\-]+)*)\}?")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string such as `(f32[3,3,64]{...}, s32[])`."""
    return sum(math.prod(int(d) for d in dims.split(",") if d) * _BYTES[dtype]
               for dtype, dims in _ARRAY.findall(shape))


def _computations(hlo: str) -> dict[str, list[str]]:
    comps, name = {}, None
    for line in hlo.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            name = m.group(1)
            comps[name] = []
        elif name is not None:
            comps[name].append(line)
    return comps


def all_reduces(hlo: str) -> list[tuple[int, bool]]:
    """(bytes, inside a while loop) for every all-reduce in optimised HLO text."""
    comps = _computations(hlo)
    callees = {name: {c.strip("% ") for m in _CALLS.findall("\n".join(lines)) for c in m.split(",")}
               for name, lines in comps.items()}
    in_loop: set[str] = set()
    frontier = [m for lines in comps.values() for line in lines for m in re.findall(r"body=%?([\w.\-]+)", line)]
    while frontier:
        name = frontier.pop()
        if name in in_loop or name not in comps:
            continue
        in_loop.add(name)
        frontier.extend(callees.get(name, ()))
    out = []
    for name, lines in comps.items():
        for line in lines:
            m = _ALL_REDUCE.search(line)
            if m and "all-reduce-done" not in line:
                out.append((shape_bytes(m.group(1)), name in in_loop))
    return out


def all_reduce_report(trainer) -> dict:
    """All-reduce bytes of `trainer.train_step` compiled for its config, beside the gradient bytes."""
    state = jax.eval_shape(trainer.init_state)
    hlo = trainer.train_step.lower(state, trainer.abstract_batch()).compile().as_text()
    found = all_reduces(hlo)
    leaves_bytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    grad_bytes = sum(x.size * 4 for x in jax.tree.leaves(state.params))  # gradients are float32
    total = sum(b for b, _ in found)
    return {"microbatches": trainer.config.mesh.microbatches, "devices": trainer.mesh.size,
            "all_reduce_ops": len(found), "all_reduce_bytes": total,
            "all_reduce_bytes_in_loops": sum(b for b, loop in found if loop),
            "gradient_bytes": grad_bytes, "batch_stats_bytes": leaves_bytes(state.batch_stats),
            "ratio_to_gradient_bytes": total / grad_bytes}
