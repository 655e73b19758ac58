"""lars_jax.workdir: what a run writes is strict JSON, atomic, and as readable as a plain open()."""
import json
import math
import os
import stat

import pytest

from lars_jax import workdir


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_permissions_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "reference.txt", "w") as f:  # the independent reference: a plain new file
            f.write("x")
        workdir.write_json(str(tmp_path / "results.json"), {"a": 1})
        workdir.write_text(str(tmp_path / "results.md"), "x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(os.stat(tmp_path / "reference.txt").st_mode)
    assert want == 0o666 & ~umask
    for name in ("results.json", "results.md"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == want, name
    assert sorted(os.listdir(tmp_path)) == ["reference.txt", "results.json", "results.md"]  # no temporaries left


def test_finite_or_none_makes_nested_records_strict_json():
    record = {"curve": [(1, 0.5), (2, math.nan)], "fit": {"b": math.inf, "n": 3, "s": "x"}, "ok": -math.inf,
              "flag": True}
    out = workdir.finite_or_none(record)
    assert out == {"curve": [[1, 0.5], [2, None]], "fit": {"b": None, "n": 3, "s": "x"}, "ok": None, "flag": True}
    json.dumps(out, allow_nan=False)  # raises on any NaN / Infinity left
    with pytest.raises(ValueError):
        json.dumps(record, allow_nan=False)
