"""Installs as README offers them: non-editable (the scaling CLI finds its inputs as package data
and writes only to --out), the core alone, and the trainer without the tfds extra."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDED_GPU = os.path.join(ROOT, "benchmarks", "results", "scaling_gpu.json")


def _files(folder) -> dict[str, float]:
    return {os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime
            for d, _, names in os.walk(folder) for f in names}


def _unmet_build_requirements() -> list[str]:
    """pyproject's build-system requirements that this venv does not satisfy (--no-build-isolation
    builds with the venv's own setuptools)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    unmet = []
    for req in map(Requirement, requires):
        try:
            if importlib.metadata.version(req.name) in req.specifier:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        unmet.append(str(req))
    return unmet


def _install(tmp_path) -> str:
    """pip install (non-editable) a copy of the checkout's package into a fresh --target folder."""
    unmet = _unmet_build_requirements()
    if unmet:
        pytest.skip(f"the venv lacks pyproject's build requirements {unmet}: "
                    f"{sys.executable} -m pip install {' '.join(repr(r) for r in unmet)}")
    src, site = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "lars_jax"), src / "lars_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # pyproject's metadata builds without setuptools' deprecation warnings (setup.sh printed three)
    assert "deprecated" not in (proc.stdout + proc.stderr).lower(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return str(site)


@pytest.mark.slow
def test_installed_scaling_cli_reports_the_measured_h100_and_writes_only_under_out(tmp_path):
    site = _install(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": site, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}

    def run(*args):
        proc = subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    where = run("-c", "import lars_jax; print(lars_jax.__file__)").strip()
    assert where.startswith(site + os.sep), where  # the installed copy, not the editable checkout
    installed = _files(site)

    stdout = run("-m", "lars_jax.scaling", "--out", "recorded_here")
    with open(RECORDED_GPU) as f:
        h100 = json.load(f)["resnet50_images_per_second"]["H100"]
    h100_rows = [line for line in stdout.splitlines() if line.split()[:1] == ["H100"]]
    assert h100_rows and all(f"{h100:.0f} img/s (measured here" in line for line in h100_rows), stdout
    doc = json.loads((elsewhere / "recorded_here" / "scaling.json").read_text())
    assert doc["measured_throughput"]["H100"][0] == pytest.approx(h100)
    assert (elsewhere / "recorded_here" / "scaling.png").stat().st_size > 10_000

    run("-m", "lars_jax.scaling", "--no-plot")  # the default output folder: ./runs/scaling
    assert sorted(_files(elsewhere)) == sorted(["recorded_here/scaling.json", "recorded_here/scaling.png",
                                                "runs/scaling/scaling.json"])
    assert _files(site) == installed  # nothing written into the installed package (or beside it)


CORE_STEP = """
import sys
import jax, jax.numpy as jnp, numpy as np
from lars_jax import models, optim, parallel, schedules, steps

schedule = schedules.warmup_poly(1.0, 2, 10)
tx = optim.lars(schedule, momentum=0.9, weight_decay=5e-4)
model = models.create_model("small_cnn", num_classes=10)
state = steps.init_state(model, tx, (28, 28, 1), seed=0)
step = jax.jit(steps.make_train_step(model, tx, num_classes=10, mesh=parallel.make_mesh(jax.devices()[:1])))
rng = np.random.default_rng(0)
batch = {"image": jnp.asarray(rng.standard_normal((8, 28, 28, 1)), jnp.float32),
         "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
losses = []
for _ in range(3):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
assert int(state.step) == 3 and np.isfinite(losses).all() and losses[-1] < losses[0], losses
heavy = sorted(m for m in ("tensorflow", "tensorflow_datasets", "ml_collections", "clu", "orbax.checkpoint.checkpoint_manager")
               if m in sys.modules)
assert not heavy, heavy
print("core step ok", losses)
"""


def _venv(tmp_path, extras: str = "") -> tuple[str, str]:
    """(python, pip list) of a fresh venv holding the checkout's package with `extras` (e.g.
    "[train]") and nothing else (pip's cache or the configured index serves the wheels)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "lars_jax"), src / "lars_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet", f"{src}{extras}"], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    return python, listed


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}


@pytest.mark.slow
def test_the_core_install_trains_a_step_without_tensorflow_or_the_trainer(tmp_path):
    python, listed = _venv(tmp_path)
    for absent in ("tensorflow", "ml-collections", "ml_collections", "clu==", "tensorboard"):
        assert absent not in listed, f"{absent} installed with the core:\n{listed}"
    run = subprocess.run([python, "-c", CORE_STEP], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env=_clean_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "core step ok" in run.stdout


READ_EVENTS = """
import sys
from lars_jax.sweep.events import read_scalars
series = read_scalars(sys.argv[1], "")
assert [s for s, _ in series["train_loss"]] == [1, 2] and [s for s, _ in series["test_accuracy"]] == [2], series
print("events ok")
"""


@pytest.mark.slow
def test_the_train_install_without_tfds_trains_on_synthetic_data_and_writes_tensorboard_events(tmp_path):
    # README: `train` adds the trainer; synthetic data needs no tfds (nor TensorFlow).
    python, listed = _venv(tmp_path, "[train]")
    assert "tensorflow" not in listed.replace("tensorboard", ""), listed
    run = subprocess.run(
        [python, "-m", "lars_jax.main", "--config", os.path.join(ROOT, "experiments", "fashion_mnist.py"),
         "--workdir", str(tmp_path / "run"), "--config.data.name=synthetic", "--config.data.image_size=16",
         "--config.data.synthetic_num_classes=10", "--config.global_batch_size=8", "--config.schedule.total_steps=2",
         "--config.schedule.warmup_epochs=0", "--config.loop.log_every=1", "--config.loop.eval_batch_size=256"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=_clean_env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["final_step"] == 2
    read = subprocess.run([python, "-c", READ_EVENTS, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=_clean_env())  # TensorBoard's own reader, in that venv
    assert read.returncode == 0 and "events ok" in read.stdout, read.stdout[-3000:] + read.stderr[-3000:]
