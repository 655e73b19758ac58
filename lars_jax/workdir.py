"""The run's directory: checked before anything is built, and strict JSON written atomically.

`results.json` and `config.json` are strict JSON (RFC 8259: no NaN or Infinity): a value that is
not a finite number is written as null, with the reason under "null_reasons". Files are written
to a temporary name and renamed, so a kill leaves the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

from lars_jax.errors import WorkdirError

RESULTS = "results.json"


def prepare(workdir: str) -> str:
    """Creates `workdir` if needed; WorkdirError unless it is a directory this process can write."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"--workdir {workdir}: exists and is not a directory; choose another --workdir")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise WorkdirError(f"--workdir {workdir}: cannot write there ({e.strerror or e}); choose a "
                           f"directory you can write, or fix its permissions") from e
    return path


def strict(record: dict, reasons: dict[str, str] | None = None) -> dict:
    """`record` with every non-finite float replaced by None, each such key's reason (from
    `reasons`, else "not a finite number") under "null_reasons"."""
    out, why = {}, dict(record.get("null_reasons") or {})
    for key, value in record.items():
        if key == "null_reasons":
            continue
        if value is None and key in (reasons or {}):
            why[key] = reasons[key]
        if isinstance(value, float) and not math.isfinite(value):
            value, why[key] = None, (reasons or {}).get(key, f"not a finite number ({value})")
        out[key] = value
    if why:
        out["null_reasons"] = why
    return out


def finite_or_none(value):
    """`value` (nested dicts, lists, tuples) with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> None:
    """Written atomically: a temporary file in the same directory, then renamed over `path`, with
    the permissions open() would give a new file (mkstemp's are 0600: unreadable to a group)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, record: dict) -> None:
    """Strict JSON (ValueError on NaN / Infinity: pass the record through `strict`), atomically."""
    write_text(path, json.dumps(record, indent=2, allow_nan=False) + "\n")


def read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None if absent or unreadable."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
