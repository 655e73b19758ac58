"""The run's directory: checked before anything is built, and strict JSON written atomically.

`results.json` and `config.json` are strict JSON (RFC 8259: no NaN or Infinity): a value that is
not a finite number is written as null, with the reason under "null_reasons". Files are written
to a temporary name and renamed, so a kill leaves the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile

from lars_jax.errors import OutputError, WorkdirError

RESULTS = "results.json"


def check(workdir: str | None, flag: str = "--workdir") -> str:
    """Its absolute path; WorkdirError (a command-line mistake, naming `flag`) unless it names a
    directory that exists or can be made, and that this process can write. Creates nothing."""
    if not (workdir or "").strip():
        raise WorkdirError(f"{flag} is empty: name the run's directory, e.g. {flag} runs/fashion_mnist")
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"{flag} {workdir}: exists and is not a directory; choose another {flag}")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f"{flag} {workdir}: {existing} is not a directory; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"{flag} {workdir}: cannot write in {existing}; choose a directory you can write, "
                           f"or fix its permissions")
    return path


def prepare(workdir: str) -> str:
    """Creates `workdir` if needed; WorkdirError unless it is a directory this process can write."""
    path = check(workdir)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise WorkdirError(f"--workdir {workdir}: cannot write there ({e.strerror or e}); choose a "
                           f"directory you can write, or fix its permissions") from e
    return path


def free_space(directory: str) -> str:
    """"N MiB free there" for the filesystem holding `directory` (or its nearest existing parent)."""
    while directory and not os.path.exists(directory):
        directory = os.path.dirname(directory)
    try:
        return f"{shutil.disk_usage(directory).free / 2**20:,.1f} MiB free there"
    except OSError:
        return "free space unknown"


def strict(record: dict, reasons: dict[str, str] | None = None) -> dict:
    """`finite_or_none(record)`, with the reason for each top-level key made null here, or null
    and named in `reasons`, under "null_reasons" (default: "not a finite number")."""
    reasons, why = reasons or {}, dict(record.get("null_reasons") or {})
    out = finite_or_none({k: v for k, v in record.items() if k != "null_reasons"})
    for key, value in out.items():
        if value is None and (key in reasons or record[key] is not None):
            why[key] = reasons.get(key, f"not a finite number ({record[key]})")
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
    the permissions open() would give a new file (mkstemp's are 0600: unreadable to a group).
    OutputError (one line: the file, the cause, the free space) when it cannot be written, e.g.
    on a full disk; the old file, if any, is then left as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"writing {path} failed ({e.strerror or e}; {free_space(directory)}); "
                          f"{'its previous version is intact' if os.path.exists(path) else 'nothing was written'}"
                          f". Free space there (or use another --workdir) and rerun the same command") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


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
