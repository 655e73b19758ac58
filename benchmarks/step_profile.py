"""Where a jitted train step's device time goes: a `jax.profiler` trace summarised by kind of operation.

`profile_step(run, n, hlo_text, keep=...)` traces n calls of `run` (steps dispatched back to back, one
sync at the end, as the training loop runs them) and returns `summarise(...)` of the trace. Each
device operation (a GPU kernel; an XLA:CPU thunk, which needs `--xla_cpu_enable_xprof_traceme`) is
attributed to the HLO instruction that launched it (the `hlo_op` of its annotation, or its kernel
name), and that instruction to a kind by the optimized HLO (`compiled.as_text()`):

  convolution      cuDNN convolutions (forward, input and weight gradients; unattributed nvjet kernels)
  matmul           cuBLAS / dot (the final dense layer)
  BN statistics    reductions (BatchNorm statistics and their gradients, the loss, norms)
  elementwise      elementwise fusions (BatchNorm affine, ReLU, residual adds, their gradients)
  copy/transpose   copies, transposes, layout changes
  max pool         the max pool and its gradient (lax's reduce-window / select-and-scatter, or
                   lars_jax.models.conv.max_pool's operations, under its `max_pool` name scope)
  optimizer        operations under the step's `optimizer` name scope (the LARS update)
  noise scale      operations under its `noise_scale` name scope
  all-reduce       collectives
  other            the rest (kernels not tied to an HLO instruction: memsets, cuDNN helpers...)

and per step: the wall time (first kernel start to last kernel end, over n), the busy time (union of
kernel intervals) and the idle time between kernels (launch gaps, host work the device waits for).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict

KINDS = ("convolution", "matmul", "BN statistics", "elementwise", "copy/transpose", "max pool", "optimizer",
         "noise scale", "all-reduce", "other")
_HLO_OP = re.compile(r"hlo_op=([^,#\s]+)")
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (.*)$")
_COMPUTATION = re.compile(r"^%?([\w.\-]+) \(.*\) -> .* \{$")


def parse_hlo(hlo_text: str) -> dict[str, dict]:
    """{instruction name: {opcode, line, body}} of an optimized HLO module's text; `body` is the text
    of the computation a fusion calls (its metadata names the operations fused)."""
    bodies, current, lines = {}, None, []
    for line in hlo_text.splitlines():
        head = _COMPUTATION.match(line.strip()) or (re.match(r"^ENTRY %?([\w.\-]+)", line))
        if head:
            current, lines = head.group(1), []
        elif line.strip() == "}" and current:
            bodies[current], current = "\n".join(lines), None
        elif current:
            lines.append(line)
    instrs = {}
    for body in bodies.values():
        for line in body.splitlines():
            m = _INSTR.match(line)
            if not m:
                continue
            rhs = m.group(2)
            opcode = re.match(r"(?:\([^=]*?\)|\S+)\s+([\w\-]+)\(", rhs)
            called = re.search(r"calls=%?([\w.\-]+)", rhs)
            instrs[m.group(1)] = {"opcode": opcode.group(1) if opcode else "", "line": rhs,
                                  "body": bodies.get(called.group(1), "") if called else ""}
    return instrs


def classify(instr: dict | None, kernel_name: str) -> str:
    """The kind (one of KINDS) of an operation: by its HLO instruction when known, else by kernel name."""
    if instr is None:
        name = kernel_name.lower()
        # cuDNN runs 1x1 convolutions on cuBLAS's nvjet kernels too; a net's one dense layer is small
        if re.search(r"conv|xmma|fprop|dgrad|wgrad|implicit_gemm|cudnn|nvjet", name):
            return "convolution"
        if re.search(r"gemm|cublas|cutlass", name):
            return "matmul"
        return "other"
    line, body, opcode = instr["line"], instr["body"], instr["opcode"]
    text = line + "\n" + body
    if "/optimizer/" in text or 'op_name="optimizer/' in text:
        return "optimizer"
    if "/noise_scale/" in text or 'op_name="noise_scale/' in text:
        return "noise scale"
    if opcode.startswith(("all-reduce", "all-gather", "reduce-scatter", "collective")):
        return "all-reduce"
    target = re.search(r'custom_call_target="([^"]+)"', line)
    if target and "conv" in target.group(1).lower() or opcode == "convolution":
        return "convolution"
    if target and re.search(r"gemm|matmul|cublas", target.group(1).lower()) or opcode == "dot":
        return "matmul"
    if opcode in ("copy", "transpose", "copy-start", "copy-done") or (
            opcode == "fusion" and re.search(r"ROOT %?\S+ = \S+ (copy|transpose)\(", body)):
        return "copy/transpose"
    if re.search(r"\b(select-and-scatter|reduce-window)\(|max_pool/|reduce_window_max|select_and_scatter", text):
        return "max pool"
    if opcode in ("reduce",) or re.search(r"\breduce\(", body) or "kind=kInput" in line:
        return "BN statistics"
    if opcode == "fusion" or opcode in ("add", "multiply", "maximum", "convert", "select"):
        return "elementwise"
    return "other"


def _device_events(profile) -> list:
    """The device-side operation events: GPU kernels (planes '/device:GPU:*'), else XLA:CPU thunks
    (host events carrying an hlo_op)."""
    gpu = [p for p in profile.planes if p.name.startswith("/device:GPU")]
    if gpu:
        lines = [line for plane in gpu for line in plane.lines]
        streams = [line for line in lines if line.name.startswith("Stream")]  # where kernels run
        return [e for line in (streams or lines) for e in line.events]
    events = []
    for plane in profile.planes:
        for line in plane.lines:
            events.extend(e for e in line.events if any(k == "hlo_op" for k, _ in e.stats)
                          and not e.name.startswith("end: "))
    return events


def _hlo_op(event) -> str | None:
    for key, value in event.stats:
        if key == "hlo_op" and isinstance(value, str):
            return value
        if isinstance(value, str):
            m = _HLO_OP.search(value)
            if m:
                return m.group(1)
    m = _HLO_OP.search(event.name)
    return m.group(1) if m else None


def summarise(profile, hlo_text: str, steps: int) -> dict:
    """Per-step device time by kind (ms, share of the wall time, operation count), wall, busy and idle."""
    instrs = parse_hlo(hlo_text)
    by_kernel_name = {name.replace(".", "_").replace("-", "_"): i for name, i in instrs.items()}
    events = _device_events(profile)
    if not events:
        return {"error": "the trace holds no device operations"}
    per_kind = defaultdict(lambda: [0.0, 0])
    attributed = 0
    intervals = []
    for e in events:
        op = _hlo_op(e)
        instr = instrs.get(op) if op else None
        if instr is None:
            instr = by_kernel_name.get(e.name)
        attributed += instr is not None
        kind = classify(instr, e.name)
        per_kind[kind][0] += e.duration_ns
        per_kind[kind][1] += 1
        intervals.append((e.start_ns, e.start_ns + e.duration_ns))
    intervals.sort()
    busy, end = 0.0, -float("inf")
    for s, t in intervals:
        if t > end:
            busy += t - max(s, end)
            end = t
    wall = intervals[-1][1] - intervals[0][0]
    ms = lambda ns: ns / steps / 1e6  # noqa: E731
    return {"steps": steps, "wall_ms": ms(wall), "busy_ms": ms(busy), "idle_ms": ms(wall - busy),
            "operations_per_step": len(events) / steps, "attributed_to_hlo": attributed / len(events),
            "kinds": {k: {"ms": ms(per_kind[k][0]), "share_of_wall": per_kind[k][0] / wall,
                          "count": per_kind[k][1] / steps} for k in KINDS if k in per_kind}}


def profile_step(run, steps: int, hlo_text: str, keep: str | None = None) -> dict:
    """Traces `run(steps)` (which must block at its end) and summarises it; `keep`: copy the raw
    .xplane.pb there (for offline reading with jax.profiler.ProfileData.from_file)."""
    import jax

    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # Python calls would bloat the trace and slow the host
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, profiler_options=options)
        t = time.perf_counter()
        run(steps)
        seconds = time.perf_counter() - t
        jax.profiler.stop_trace()
        trace = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)[0]
        if keep:
            shutil.copyfile(trace, keep)
        summary = summarise(jax.profiler.ProfileData.from_file(trace), hlo_text, steps)
    summary["traced_step_ms"] = seconds / steps * 1e3
    return summary


def format_summary(label: str, s: dict) -> str:
    if "error" in s:
        return f"{label}: {s['error']}"
    rows = [f"{label}: {s['traced_step_ms']:.2f} ms/step traced; device wall {s['wall_ms']:.2f} ms, busy "
            f"{s['busy_ms']:.2f}, idle {s['idle_ms']:.2f}; {s['operations_per_step']:.0f} ops/step "
            f"({100 * s['attributed_to_hlo']:.0f}% tied to HLO)"]
    for kind, v in sorted(s["kinds"].items(), key=lambda kv: -kv[1]["ms"]):
        rows.append(f"    {kind:<15} {v['ms']:8.2f} ms  {100 * v['share_of_wall']:5.1f}%  {v['count']:6.0f} ops")
    return "\n".join(rows)
