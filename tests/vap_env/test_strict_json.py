"""Reports are strict JSON: no NaN / Infinity tokens, which strict parsers reject."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vap_env.strict_json import dumps, json_safe, write_json


def _strict_loads(text: str):
    def reject(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_non_finite_values_become_null_at_any_depth():
    report = {
        "psnr": float("inf"),
        "by_chunk": [1.5, float("nan"), -float("inf")],
        "ci": (np.float32(0.25), np.float64("nan")),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "array": np.array([1.0, np.inf]),
        "text": "inf",
        "none": None,
    }
    parsed = _strict_loads(dumps(report))
    assert parsed == {
        "psnr": None,
        "by_chunk": [1.5, None, None],
        "ci": [0.25, None],
        "n": 3,
        "ok": True,
        "array": [1.0, None],
        "text": "inf",
        "none": None,
    }
    assert json_safe({"x": [float("nan")]}) == {"x": [None]}
    # the plain json module writes what strict parsers reject: the reason for this module
    with pytest.raises(ValueError, match="Infinity"):
        _strict_loads(json.dumps(report["psnr"]))


def test_what_slips_past_raises_and_writes_no_file(tmp_path):
    path = tmp_path / "sub" / "report.json"
    with pytest.raises(ValueError, match="Out of range float"):
        write_json(path, {float("nan"): 1})  # a NaN dict key is not converted: allow_nan=False
    assert not path.exists()
    assert write_json(path, {"v": float("nan")}, indent=2) == path
    assert _strict_loads(path.read_text()) == {"v": None}
