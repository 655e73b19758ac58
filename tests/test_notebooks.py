"""Every notebook in notebooks/ runs top to bottom (nbclient, the venv's python3 kernel).

LARS_JAX_NOTEBOOK_SMOKE=1 makes each notebook's parameters cell pick tiny settings (a few training
steps, a 4-cell sweep); the code path is otherwise the one a user runs. About a minute in all.
"""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = ("quickstart.ipynb", "large_batch.ipynb", "scaling.ipynb")
# Text each notebook must print (it ran for real, not just without errors).
EXPECTED = {"quickstart.ipynb": "test accuracy", "large_batch.ipynb": "cells,",
            "scaling.ipynb": "Table 1 shape"}


def test_every_notebook_is_tested():
    assert sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_colab_badge_and_guarded_install(name):
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    nbformat.validate(nb)
    assert "colab.research.google.com/github/" in nb.cells[0].source and name in nb.cells[0].source
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    assert 'IN_COLAB = "google.colab" in sys.modules' in setup
    # Shell installs only under the Colab guard: indented inside `if IN_COLAB:`.
    assert all(line.startswith("    ") or line.startswith("        ")
               for line in setup.splitlines() if line.lstrip().startswith("!"))


def _text_outputs(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream"
                       else str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    monkeypatch.setenv("LARS_JAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the kernel runs on 1 CPU device, as a user's would
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": NOTEBOOK_DIR}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert EXPECTED[name] in _text_outputs(nb)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
