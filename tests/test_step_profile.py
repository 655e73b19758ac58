"""benchmarks/step_profile.py: a device trace summarised by kind of operation, checked against a trace
whose every kernel's time and kind are known (built as an XSpace text proto), and on a real CPU trace."""
import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import step_profile  # noqa: E402

HLO = """HloModule jit_train_step, entry_computation_layout={()->()}

%fused_add (p0: bf16[8], p1: bf16[8]) -> bf16[8] {
  %p0 = bf16[8]{0} parameter(0)
  %p1 = bf16[8]{0} parameter(1)
  ROOT %add.0 = bf16[8]{0} add(%p0, %p1), metadata={op_name="jit(train_step)/jvp(ResNet)/add"}
}

%fused_reduce (p0: f32[8]) -> f32[] {
  %p0 = f32[8]{0} parameter(0)
  %c = f32[] constant(0)
  ROOT %reduce.0 = f32[] reduce(%p0, %c), dimensions={0}, to_apply=%region_add
}

%fused_update (p0: f32[8]) -> f32[8] {
  %p0 = f32[8]{0} parameter(0)
  ROOT %multiply.0 = f32[8]{0} multiply(%p0, %p0), metadata={op_name="jit(train_step)/optimizer/mul"}
}

%fused_transpose (p0: bf16[2,4]) -> bf16[4,2] {
  %p0 = bf16[2,4]{1,0} parameter(0)
  ROOT %transpose.0 = bf16[4,2]{1,0} transpose(%p0), dimensions={1,0}
}

ENTRY %main () -> () {
  %loop_add_fusion.1 = bf16[8]{0} fusion(%a, %b), kind=kLoop, calls=%fused_add
  %input_reduce_fusion.2 = f32[] fusion(%c), kind=kInput, calls=%fused_reduce
  %custom-call.3 = (bf16[8,4,4,8]{3,2,1,0}, u8[0]{0}) custom-call(%x, %w), custom_call_target="__cudnn$convForward"
  %loop_multiply_fusion.4 = f32[8]{0} fusion(%d), kind=kLoop, calls=%fused_update
  %input_transpose_fusion.5 = bf16[4,2]{1,0} fusion(%e), kind=kInput, calls=%fused_transpose
  %select-and-scatter.6 = bf16[8]{0} select-and-scatter(%f, %g, %h), window={size=3 stride=2}, select=%ge, scatter=%add
  %all-reduce.7 = f32[8]{0} all-reduce(%i), replica_groups={}, to_apply=%region_add
}
"""

# (stream, kernel name, hlo_op stat or None, start us, duration us): two steps of one program
KERNELS = [
    (1, "loop_add_fusion_1", "loop_add_fusion.1", 0, 10),
    (1, "input_reduce_fusion_2", "input_reduce_fusion.2", 12, 5),
    (1, "sm90_xmma_fprop_implicit_gemm", "custom-call.3", 20, 30),
    (2, "memset32", None, 25, 4),  # another stream, overlapping: busy time counts it once
    (1, "loop_multiply_fusion_4", None, 55, 3),  # no annotation: found by its kernel name
    (1, "input_transpose_fusion_5", "input_transpose_fusion.5", 60, 2),
    (1, "select_and_scatter_kernel", "select-and-scatter.6", 64, 6),
    (1, "all_reduce_kernel", "all-reduce.7", 70, 1),
    (1, "nvjet_sm90_tst_64x64", None, 75, 5),  # cuBLAS kernel inside a cuDNN 1x1 conv, unattributed
    (1, "loop_add_fusion_1", "loop_add_fusion.1", 100, 10),  # step 2
    (1, "sm90_xmma_fprop_implicit_gemm", "custom-call.3", 115, 30),
]


def trace_proto(kernels) -> str:
    names = sorted({k[1] for k in kernels})
    meta = {n: i + 1 for i, n in enumerate(names)}
    lines = []
    for stream in sorted({k[0] for k in kernels}):
        events = []
        for s, name, op, start, dur in kernels:
            if s == stream:
                stats = f' stats {{ metadata_id: 1 str_value: "{op}" }}' if op else ""
                events.append(f"events {{ metadata_id: {meta[name]} offset_ps: {start * 10**6} "
                              f"duration_ps: {dur * 10**6}{stats} }}")
        lines.append(f'lines {{ id: {stream} name: "Stream #{stream}" timestamp_ns: 0 {" ".join(events)} }}')
    metadata = " ".join(f'event_metadata {{ key: {i} value {{ id: {i} name: "{n}" }} }}' for n, i in meta.items())
    return (f'planes {{ id: 1 name: "/device:GPU:0" {" ".join(lines)} {metadata} '
            f'stat_metadata {{ key: 1 value {{ id: 1 name: "hlo_op" }} }} }}')


def test_summary_of_a_known_trace():
    profile = jax.profiler.ProfileData.from_text_proto(trace_proto(KERNELS))
    s = step_profile.summarise(profile, HLO, steps=2)
    ms = {k: v["ms"] for k, v in s["kinds"].items()}
    expected_us = {"elementwise": 20, "BN statistics": 5, "convolution": 65, "other": 4, "optimizer": 3,
                   "copy/transpose": 2, "max pool": 6, "all-reduce": 1}
    assert ms == pytest.approx({k: v / 2 / 1e3 for k, v in expected_us.items()})
    assert s["kinds"]["convolution"]["count"] == 1.5  # 3 kernels over 2 steps
    assert s["operations_per_step"] == len(KERNELS) / 2
    assert s["attributed_to_hlo"] == pytest.approx(9 / 11)  # the memset and the nvjet kernel are not
    # wall: 0 .. 145 us; busy: every interval, the memset inside the conv counted once
    assert s["wall_ms"] == pytest.approx(145 / 2 / 1e3)
    busy = 10 + 5 + 30 + 3 + 2 + 6 + 1 + 5 + 10 + 30
    assert s["busy_ms"] == pytest.approx(busy / 2 / 1e3)
    assert s["idle_ms"] == pytest.approx((145 - busy) / 2 / 1e3)
    assert "convolution" in step_profile.format_summary("x", {**s, "traced_step_ms": 1.0})


def test_a_real_cpu_trace_is_attributed_to_the_compiled_program(tmp_path):
    f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
    x = jnp.ones((64, 64))
    hlo = f.lower(x).compile().as_text()

    def run(n):
        for _ in range(n):
            out = f(x)
        out.block_until_ready()

    run(1)
    s = step_profile.profile_step(run, 3, hlo, keep=str(tmp_path / "t.xplane.pb"))
    if "error" in s:  # XLA:CPU names its operations only with --xla_cpu_enable_xprof_traceme
        pytest.skip(s["error"])
    assert s["attributed_to_hlo"] == 1.0 and s["operations_per_step"] >= 1
    assert sum(v["ms"] for v in s["kinds"].values()) <= s["wall_ms"] + 1e-9
    assert (tmp_path / "t.xplane.pb").stat().st_size > 0
