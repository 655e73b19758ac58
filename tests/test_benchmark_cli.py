"""The benchmark scripts' command lines: default outputs stay out of benchmarks/results/, and a
missing dependency or device ends in one line and a non-zero exit, not a traceback."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
RECORDED = os.path.join(BENCHMARKS, "results")
SCRIPTS = ("calibrate_batch_size.py", "calibrate_scaling.py", "gpu_resnet50.py", "input_pipeline.py", "model_flops.py",
           "noise_scale_overhead.py", "optimizer.py", "torch_resnet50.py", "train_step.py", "vmapped_lr_trials.py")
MODULES = ("common_cli.py", "step_profile.py")  # imported by the scripts, not run


def test_every_benchmark_script_is_listed():
    assert sorted(SCRIPTS) == sorted(f for f in os.listdir(BENCHMARKS) if f.endswith(".py") and f not in MODULES)


def run_script(script, *args, cwd, pythonpath=None, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_failure(proc, *phrases):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and all(p in lines[0] for p in phrases), proc.stderr[-3000:]


@pytest.mark.slow
def test_train_step_without_torch_says_how_to_install_it(tmp_path):
    shim = tmp_path / "no_torch"
    shim.mkdir()
    (shim / "torch.py").write_text("raise ImportError('No module named torch (test shim)')\n")
    proc = run_script("train_step.py", "--nets", "small_cnn", cwd=tmp_path, pythonpath=str(shim))
    assert_one_line_failure(proc, "pip install -e .[bench]", "--no-torch")


@pytest.mark.slow
@pytest.mark.parametrize("script, args, hint", [
    ("gpu_resnet50.py", (), "on CPU try --tiny"),
    ("calibrate_scaling.py", ("--resnet50-throughput",), "without --resnet50-throughput"),
])
def test_gpu_scripts_on_a_cpu_stop_before_allocating(tmp_path, script, args, hint):
    proc = run_script(script, *args, cwd=tmp_path, timeout=60)
    assert_one_line_failure(proc, "needs a GPU (found cpu)", hint)
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_model_flops_default_run_writes_under_runs_not_over_the_recorded_results(tmp_path):
    recorded = os.path.join(RECORDED, "model_flops.json")
    before = os.stat(recorded).st_mtime
    proc = run_script("model_flops.py", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "runs" / "benchmarks")) == ["model_flops.json"]
    assert os.stat(recorded).st_mtime == before


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_default_output_is_under_runs_or_none(tmp_path, script):
    proc = run_script(script, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_help = " ".join(proc.stdout.split("--out", 2)[-1].split())  # the --out option's help text
    assert "(default: runs/benchmarks/" in out_help or "(default: none)" in out_help, proc.stdout
    assert "default: benchmarks/results" not in out_help
    assert not os.listdir(tmp_path)
