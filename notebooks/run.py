"""Runs notebooks headless and shows what they show:

    .venv/bin/python notebooks/run.py notebooks/quickstart.ipynb [more.ipynb ...] [--out runs/notebooks]

Each notebook runs top to bottom in a python3 kernel of this interpreter's environment, from its
own folder as in JupyterLab. The text its cells print (training lines included) is printed here
as it comes; each figure is written to OUT/NAME-K.png and the executed notebook, outputs
included, to OUT/NAME.ipynb. A failing cell stops the run with its error; exit code 1.
LARS_JAX_NOTEBOOK_SMOKE=1 picks the notebooks' tiny settings (what the tests run).
"""
from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile

import nbclient
import nbformat
from jupyter_client.manager import KernelManager
from nbclient.exceptions import CellExecutionError


class EchoingClient(nbclient.NotebookClient):
    """An nbclient that prints each text output as it arrives and writes each figure to a file
    (`figures` is a path prefix)."""

    def __init__(self, nb, *, figures: str, echo=print, **kwargs):
        super().__init__(nb, **kwargs)
        self.figures, self.echo, self.written = figures, echo, []

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return out
        data = out.get("data", {})
        if out.get("output_type") == "stream":
            self.echo(out["text"], end="")
        elif "image/png" in data:
            path = f"{self.figures}-{len(self.written) + 1}.png"
            with open(path, "wb") as f:
                f.write(base64.b64decode(data["image/png"]))
            self.written.append(path)
            self.echo(f"[figure: {path}]")
        elif "text/plain" in data and out.get("output_type") == "execute_result":
            self.echo(data["text/plain"])
        return out


def execute(nb, *, cwd: str, figures: str, echo=print, timeout: int = 3600) -> list[str]:
    """Runs `nb` in place from `cwd`; returns the figure files written. The kernel talks over local
    sockets (IPC) in a temporary folder: TCP without encryption makes the kernel print a warning."""
    with tempfile.TemporaryDirectory() as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        client = EchoingClient(nb, figures=figures, echo=echo, km=km, timeout=timeout,
                               resources={"metadata": {"path": cwd}})
        try:
            client.execute()
        finally:  # nbclient leaves a kernel it was given running, and its client listening
            if client.kc is not None:
                client.kc.stop_channels()
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    return client.written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="the .ipynb files to run")
    parser.add_argument("--out", default=os.path.join("runs", "notebooks"),
                        help="where the executed notebooks and their figures go (default: %(default)s)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for path in args.notebooks:
        name = os.path.splitext(os.path.basename(path))[0]
        print(f"== {path}", flush=True)
        nb = nbformat.read(path, as_version=4)
        saved = os.path.join(args.out, name + ".ipynb")
        try:
            figures = execute(nb, cwd=os.path.dirname(os.path.abspath(path)), figures=os.path.join(args.out, name),
                              echo=lambda *a, **k: print(*a, **k, flush=True))
        except CellExecutionError as e:
            nbformat.write(nb, saved)
            print(f"{path}: a cell failed ({e.ename}: {e.evalue}); the notebook as far as it ran: {saved}",
                  file=sys.stderr)
            return 1
        nbformat.write(nb, saved)
        print(f"== {path}: ran; executed notebook {saved}, {len(figures)} figure(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
