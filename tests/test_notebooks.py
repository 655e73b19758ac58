"""Every notebook in notebooks/ runs top to bottom headless (notebooks/run.py, as README prints it)
and shows its result there, and its Colab setup works without Colab.

LARS_JAX_NOTEBOOK_SMOKE=1 makes each notebook's parameters cell pick tiny settings (a few training
steps, a 4-cell sweep); the code path is otherwise the one a user runs.
"""
import gc
import glob
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tomllib
import warnings

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
RUNNER = os.path.join(NOTEBOOK_DIR, "run.py")
NOTEBOOKS = ("quickstart.ipynb", "large_batch.ipynb", "scaling.ipynb")
# Text each notebook must print (it ran for real, not just without errors), and its figures.
EXPECTED = {"quickstart.ipynb": "test accuracy", "large_batch.ipynb": "cells,",
            "scaling.ipynb": "Table 1 shape"}
FIGURES = {"quickstart.ipynb": 1, "large_batch.ipynb": 3, "scaling.ipynb": 2}
# What the Colab branch installs: pip extras, and whether Fashion-MNIST comes through apt.
COLAB_EXTRAS = {"quickstart.ipynb": "train,tfds", "large_batch.ipynb": "train,tfds", "scaling.ipynb": None}
SOURCE_LINE = 'LARS_JAX_SOURCE = ""  #@param {type:"string"}'
NOISE = ("WARNING", "Warning", "oneDNN", "InitializeLog", "over TCP", "Traceback", "Parent appears")


def _environment(**extra) -> dict:
    """The user's environment: one CPU device, none of the tests' settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")}
    return {**env, "LARS_JAX_NOTEBOOK_SMOKE": "1", **extra}


def test_every_notebook_is_tested():
    assert sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_with_cell_ids_and_its_source_parameter_on_top(name):
    path = os.path.join(NOTEBOOK_DIR, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nbformat warns of cells without an id
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    assert "your-org" not in open(path).read()  # no placeholder repository to open or clone
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    assert [line for line in setup.splitlines() if not line.startswith("#")][0] == SOURCE_LINE
    assert 'IN_COLAB = "google.colab" in sys.modules' in setup
    # Shell commands only under the Colab guard: indented inside `if IN_COLAB:`.
    assert all(line.startswith("    ") for line in setup.splitlines() if line.lstrip().startswith("!"))


def test_scaling_notebooks_colab_device_list_is_the_packaged_devices():
    import ast

    from lars_jax import scaling

    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, "scaling.ipynb"), as_version=4)
    line = next(line for c in nb.cells for line in c.source.splitlines() if line.startswith("DEVICE = "))
    offered = ast.literal_eval(line.split("#@param", 1)[1].strip())
    # the widget's list (the cell's interact call) leaves out the DGX-1 node as well
    assert offered == [name for name in scaling.DEVICES if name != "DGX-1"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "scaling.ipynb" else n
                                  for n in NOTEBOOKS])  # the two that train: beyond the quick tier
def test_notebook_runs_headless_and_shows_its_result(name, tmp_path):
    proc = subprocess.run([sys.executable, RUNNER, os.path.join("notebooks", name), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=_environment())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert EXPECTED[name] in proc.stdout, out[-3000:]
    for noise in NOISE:  # what the project can silence: kernel, TensorFlow and library notices
        assert noise not in out, (noise, out[-3000:])
    figures = [line.split("[figure: ")[1].rstrip("]") for line in proc.stdout.splitlines() if "[figure: " in line]
    assert len(figures) == FIGURES[name] and all(os.path.getsize(f) > 1000 for f in figures), figures
    saved = nbformat.read(str(tmp_path / name), as_version=4)  # the executed notebook, outputs included
    assert sum(len(c.get("outputs", [])) for c in saved.cells if c.cell_type == "code") >= FIGURES[name] + 1


def test_a_failing_cell_is_one_line_and_the_notebook_is_kept(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('before')"),
                                         nbformat.v4.new_code_cell("raise ValueError('no such file: x.csv')")])
    nbformat.write(nb, str(tmp_path / "broken.ipynb"))
    proc = subprocess.run([sys.executable, RUNNER, str(tmp_path / "broken.ipynb"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=_environment())
    assert proc.returncode == 1 and "before" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "ValueError: no such file: x.csv" in proc.stderr, proc.stderr
    saved = nbformat.read(str(tmp_path / "out" / "broken.ipynb"), as_version=4)
    assert saved.cells[1].outputs[0]["ename"] == "ValueError"  # the traceback is kept there


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def source_repository(tmp_path_factory):
    """A git repository of this working tree's files (committed or not), to clone as Colab would."""
    repo = tmp_path_factory.mktemp("source")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, f)):
            os.makedirs(repo / os.path.dirname(f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), repo / f)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(git + args, cwd=repo, check=True)
    return f"file://{repo}"


def _shims(tmp_path) -> str:
    """pip and apt-get stand-ins that log their arguments. pip installs nothing (it would change
    this environment); apt-get installs dataset-fashion-mnist from this machine's copy of Debian's
    files, into $LARS_JAX_FASHION_MNIST_DIR: the one step of the setup that needs the network."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "pip $*" >> {tmp_path}/calls\n')
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/calls\n'
        'case "$*" in *"install"*dataset-fashion-mnist*)\n'
        '  mkdir -p "$LARS_JAX_FASHION_MNIST_DIR" && cp /usr/share/datasets/fashion-mnist/*.gz "$LARS_JAX_FASHION_MNIST_DIR";;\n'
        'esac\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return str(bin_dir)


FAKE_COLAB = ("import sys, types\n"  # a fake Colab: the module, and the submodule JAX imports when it sees it
              "colab = sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
              "colab.output = sys.modules['google.colab.output'] = types.ModuleType('google.colab.output')")


@pytest.mark.slow  # a kernel per notebook; quickstart trains on data prepared afresh
@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
                    reason="needs `sudo apt-get install -y dataset-fashion-mnist`")
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_colab_setup_clones_installs_and_gets_the_data(name, tmp_path, monkeypatch, source_repository):
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    setup.source = setup.source.replace(SOURCE_LINE, f'LARS_JAX_SOURCE = "{source_repository}"')
    check = nbformat.v4.new_code_cell("import lars_jax\nprint('lars_jax from', lars_jax.__file__)")
    cells = nb.cells if name == "quickstart.ipynb" else [setup]  # quickstart: train on what apt brought
    nb.cells = [nbformat.v4.new_code_cell(FAKE_COLAB), *cells, check]
    content = tmp_path / "content"  # Colab's working directory
    content.mkdir()
    for key, value in _environment(PATH=f"{_shims(tmp_path)}:{os.environ['PATH']}", TFDS_DATA_DIR=str(tmp_path / "tfds"),
                                   LARS_JAX_FASHION_MNIST_DIR=str(tmp_path / "debian")).items():
        monkeypatch.setenv(key, value)
    printed = []
    _runner().execute(nb, cwd=str(content), figures=str(tmp_path / "figure"),
                      echo=lambda *a, **k: printed.append(" ".join(map(str, a))))
    out = "".join(printed)
    clone = content / "lars_jax"
    assert f"lars_jax from {clone / 'lars_jax' / '__init__.py'}" in out, out[-3000:]
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    extras = COLAB_EXTRAS[name]
    if extras is None:
        assert calls == []
        return
    assert f"pip install -q -e {clone}[{extras}]" in [c.strip() for c in calls], calls
    declared = tomllib.loads((clone / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.split(",")) <= set(declared)
    assert any(c.startswith("apt-get") and "dataset-fashion-mnist" in c for c in calls), calls
    if name == "quickstart.ipynb":
        assert EXPECTED[name] in out and glob.glob(str(tmp_path / "tfds" / "fashion_mnist" / "*" / "dataset_info.json"))


def test_the_runner_stops_its_kernel_client(tmp_path, caplog):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    printed = []
    with caplog.at_level(logging.DEBUG):
        _runner().execute(nb, cwd=str(tmp_path), figures=str(tmp_path / "figure"),
                          echo=lambda text, **_: printed.append(text))
        gc.collect()  # a client still listening says so when collected, at exit in a user's run
    assert printed == ["42\n"]
    assert not [r.getMessage() for r in caplog.records if "Could not destroy zmq context" in r.getMessage()]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_colab_without_a_source_says_what_to_set(name, tmp_path):
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    nb.cells = [nbformat.v4.new_code_cell(FAKE_COLAB), next(c for c in nb.cells if c.cell_type == "code")]
    with pytest.raises(Exception) as e:
        _runner().execute(nb, cwd=str(tmp_path), figures=str(tmp_path / "figure"), echo=lambda *a, **k: None)
    assert e.value.ename == "SystemExit" and e.value.evalue.startswith("Set LARS_JAX_SOURCE"), e.value
    assert os.listdir(tmp_path) == []  # nothing cloned or written
