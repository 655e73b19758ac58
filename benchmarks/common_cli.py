"""What the benchmark scripts' command lines share: default output paths and the accelerator check."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def default_out(filename: str) -> str:
    """runs/benchmarks/<filename>, relative to the current directory: a default run never writes over
    the recorded results in benchmarks/results/ (recording there takes an explicit --out)."""
    return os.path.join("runs", "benchmarks", filename)


def write_json(path: str, doc: dict, indent: int = 2) -> None:
    """Writes `doc` to `path` (its folder made) and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=indent)
    print(f"wrote {path}")


def code_version(path: str) -> str:
    """`git describe --always --dirty` of the checkout at `path`: which code a recorded figure measured."""
    try:
        proc = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def require_accelerator(script: str, hint: str) -> None:
    """Exits with one line unless JAX's default backend is an accelerator; call it before allocating."""
    import jax

    platform = jax.default_backend()
    if platform == "cpu":
        sys.exit(f"{script}: needs a GPU (found {platform}); {hint}")
