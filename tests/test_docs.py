"""Executable documentation: every command in README.md and docs/*.md runs as printed.

Each ```bash block's commands (a line, with `\\` continuations joined; a block holding a shell loop
is one command) must appear in COMMANDS, a reviewed table saying how the test runs it: as printed
with a tiny budget appended (`Run`: `--workdir` / `--out` values moved into a temporary
directory), expecting its clear error (`Fails`: needs ImageNet, a GPU, PyTorch...), or not at all
with the reason (`Skip`). A command the table does not know fails the test, so a new or changed
command is reviewed before it is documented. ```python blocks are executed.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
# A training command's smallest budget: 2 steps of the real schedule at batch 64, little output.
TINY = ("--config.loop.stop_after_steps=2", "--config.global_batch_size=64", "--config.loop.log_every=1",
        "--config.loop.eval_batch_size=2000")


@dataclasses.dataclass(frozen=True)
class Run:
    extra: tuple = ()  # inserted after the command's --workdir value (else before a trailing comment, or at the end)
    expect: str = ""  # text the output must contain
    timeout: int = 600
    instead: str = ""  # a command run in its place, for one that cannot run unattended (the reason says why)
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Fails:
    needles: tuple  # the clear error must name these
    within: float = 60.0  # seconds


@dataclasses.dataclass(frozen=True)
class Skip:
    reason: str


FM = "--config experiments/fashion_mnist.py"
R50 = "--config experiments/resnet50_32k.py"
SWEEP = ".venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py " \
        "--workdir runs/sweep_fashion_mnist --out benchmarks/results/sweep_fashion_mnist"
CNN_SWEEP = ".venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_cnn_batch.py " \
            "--workdir runs/sweep_fashion_mnist_cnn --out benchmarks/results/sweep_fashion_mnist_cnn"
REGIME_SWEEP = ".venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_regime.py " \
               "--workdir runs/sweep_fashion_mnist_regime --out benchmarks/results/sweep_fashion_mnist_regime"
CNN_REGIME_SWEEP = ".venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_cnn_regime.py " \
                   "--workdir runs/sweep_fashion_mnist_cnn_regime --out benchmarks/results/sweep_fashion_mnist_cnn_regime"
RETRY_LOOP = ("while true; do\n"
              f".venv/bin/python -m lars_jax.main {FM} --workdir runs/fm; rc=$?\n"
              "[ $rc -eq 75 ] || break\ndone\nexit $rc")
COMMANDS = {
    # README.md
    f"./setup.sh && .venv/bin/python -m lars_jax.main {FM} --workdir runs/fashion_mnist": Run(TINY, "results in"),
    "./setup.sh && .venv/bin/python -m pytest -q -n 2": Skip("the test suite itself (CI runs exactly this)"),
    '.venv/bin/python -m pytest -q -m "not slow"': Skip("the test suite's quick tier, a part of the suite itself"),
    f".venv/bin/python -m lars_jax.main {FM} --workdir runs/fm_4k --config.global_batch_size=4096 "
    "--config.schedule.base_learning_rate=10 --config.schedule.num_epochs=10":
        Run(("--config.loop.stop_after_steps=1", "--config.loop.eval_batch_size=2000"), "results in"),
    SWEEP: Skip("its --quick form below it in docs/results.md runs (the same config; CNN_SWEEP's run checks --out)"),
    ".venv/bin/python -m lars_jax.sweep --config experiments/sweeps/fashion_mnist_batch.py --workdir runs/sweep_quick "
    "--quick": Run(expect="wrote"),
    CNN_SWEEP: Run(("--quick",), "wrote"),
    REGIME_SWEEP: Skip("fashion_mnist_batch.py's --quick runs the same code; tests/test_sweep.py and "
                       "tests/test_batch_size.py read this config and its recorded results"),
    CNN_REGIME_SWEEP: Skip("fashion_mnist_cnn_batch.py's --quick runs the same code on the same net; "
                           "tests/test_sweep.py holds this config to its recorded results"),
    CNN_REGIME_SWEEP.split(" --workdir")[0] + " --workdir runs/cnn_regime_sgd_25_epochs "
    "--config.base.schedule.num_epochs=25 --config.batch_sizes='(256,)' --config.optimizer_order=\"('sgd_goyal',)\" "
    "--config.extra_seeds='()'": Skip("one 5-minute cell of CNN_REGIME_SWEEP's code; tests/test_sweep.py passes "
                                      "--config.<field> overrides through the sweep's command line"),
    ".venv/bin/python benchmarks/vmapped_lr_trials.py --out benchmarks/results/vmapped_lr_trials_cpu.json":
        Run(("--batches", "32", "--rounds", "1", "--steps", "1"), "wrote"),
    ".venv/bin/python -m lars_jax.batch_size --config experiments/fashion_mnist.py --workdir runs/batch_size_fm "
    "--batch_size 256": Run(("--steps", "20", "--config.loop.eval_batch_size=2000"), "wrote"),
    ".venv/bin/jupyter lab notebooks/": Run(instead=".venv/bin/jupyter lab --version", expect="4.",
                                            reason="an interactive server: check that JupyterLab is installed"),
    ".venv/bin/python notebooks/run.py notebooks/quickstart.ipynb":
        Skip("tests/test_notebooks.py runs it for every notebook (smoke settings) and checks what it prints"),
    # docs/experiments.md
    f".venv/bin/python -m lars_jax.main {R50} --workdir runs/resnet50_32k":
        Fails(("ILSVRC2012_img_train.tar", "builder('imagenet2012'", ".download_and_prepare()")),
    f".venv/bin/python -m lars_jax.main {R50} --workdir runs/smoke --config.data.name=synthetic --config.data.image_size=64 "
    "--config.global_batch_size=64 --config.mesh.microbatches=1 --config.loop.stop_after_steps=2 "
    "--config.data.synthetic_num_eval=64": Run(expect="results in"),
    # docs/performance.md
    ".venv/bin/python benchmarks/gpu_resnet50.py         # on a GPU: the whole plan -> runs/benchmarks/gpu_resnet50/":
        Fails(("needs a GPU",)),
    ".venv/bin/python benchmarks/gpu_resnet50.py --tiny  # on a CPU: the same plan on ResNet-20, a smoke run":
        Run(("--jobs", "variants", "--variants", "main", "--steps", "1", "--rounds", "1"), "wrote"),
    # docs/noise-scale.md
    ".venv/bin/python benchmarks/noise_scale_overhead.py --out benchmarks/results/noise_scale_overhead_cpu.json":
        Run(("--rounds", "2", "--steps", "1", "--profile-steps", "1", "--models", "mlp,small_cnn"), "wrote"),
    # docs/failures.md
    RETRY_LOOP: Run(TINY, "results in"),
    # docs/scaling.md
    ".venv/bin/python -m lars_jax.scaling                      # tables; runs/scaling/scaling.json, scaling.png":
        Run(expect="KNL"),
    ".venv/bin/python -m lars_jax.scaling --out benchmarks/results   # re-record the committed scaling.json/.png":
        Run(expect="KNL"),
    ".venv/bin/python -m lars_jax.scaling --measured runs/benchmarks/scaling_gpu.json   # a newer GPU measurement":
        Fails(("runs/benchmarks/scaling_gpu.json",)),
    ".venv/bin/python benchmarks/calibrate_scaling.py          # 1 vs 8 fake CPU devices -> runs/benchmarks/":
        Run(("--steps", "1"), "predicted"),
    ".venv/bin/python benchmarks/calibrate_scaling.py --resnet50-throughput   # on a GPU: the measured H100 input":
        Fails(("needs a GPU",)),
}


def _commands(text: str) -> list[str]:
    """The commands of every ```bash block in a markdown page, in order."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", block)
        lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
        if re.search(r"^(while|for|until|if)\b", joined, flags=re.M):
            out.append("\n".join(lines))
        else:
            out.extend(lines)
    return out


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


DOCUMENTED = [(page, command) for page in PAGES for command in _commands(open(os.path.join(ROOT, page)).read())]


def test_every_documented_command_is_reviewed():
    unknown = [f"{page}: {command}" for page, command in DOCUMENTED if command not in COMMANDS]
    assert not unknown, "documented commands missing from tests/test_docs.py COMMANDS:\n" + "\n".join(unknown)
    stale = sorted(set(COMMANDS) - {c for _, c in DOCUMENTED})
    assert not stale, "COMMANDS entries no page documents any more:\n" + "\n".join(stale)


def _in_tmp(command: str, tmp_path) -> str:
    """--workdir / --out values moved under tmp_path (documented outputs are never overwritten)."""
    return re.sub(r"--(workdir|out)([ =])([^\s;]+)", lambda m: f"--{m[1]}{m[2]}{tmp_path}/{m[1]}_{os.path.basename(m[3])}",
                  command)


def _with_extra(command: str, extra: tuple) -> str:
    if not extra:
        return command
    args = " ".join(extra)
    if re.search(r"--workdir[ =][^\s;]+", command):
        return re.sub(r"(--workdir[ =][^\s;]+)", lambda m: f"{m[1]} {args}", command)
    code, sep, comment = command.partition("  #")
    return f"{code.rstrip()} {args}{'  #' + comment if sep else ''}"


FIRST_PAGE: dict[str, str] = {}
for _page, _command in DOCUMENTED:
    FIRST_PAGE.setdefault(_command, _page)
UNIQUE = [(page, command) for command, page in FIRST_PAGE.items()]


@pytest.mark.slow  # each runs a command as a user would (once, however many pages print it)
@pytest.mark.parametrize("page,command", UNIQUE, ids=[f"{p}:{i}" for i, (p, _) in enumerate(UNIQUE)])
def test_documented_command_runs_as_printed(page, command, tmp_path):
    how = COMMANDS.get(command)
    if how is None:
        pytest.fail(f"{page}: not reviewed: {command}")
    if isinstance(how, Skip):
        pytest.skip(how.reason)
    script = getattr(how, "instead", "") or _with_extra(_in_tmp(command, tmp_path), getattr(how, "extra", ()))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user's machine
    started = time.time()
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=getattr(how, "timeout", 600), env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds, out = time.time() - started, proc.stdout + proc.stderr
    if isinstance(how, Fails):
        assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
        last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
        assert all(n in last for n in how.needles), last
        assert seconds < how.within, f"took {seconds:.0f} s"
    else:
        assert proc.returncode == 0, out[-3000:]
        assert how.expect in out, out[-3000:]


@pytest.mark.parametrize("page,index", [(p, i) for p in PAGES for i, _ in enumerate(_python_blocks(open(os.path.join(ROOT, p)).read()))])
def test_documented_python_runs(page, index):
    source = _python_blocks(open(os.path.join(ROOT, page)).read())[index]
    exec(compile(source, f"{page} python block {index}", "exec"), {})
