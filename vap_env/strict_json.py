"""Strict JSON for the reports the project writes: never a ``NaN`` or ``Infinity`` token.

Python's ``json`` writes ``float("nan")`` and ``float("inf")`` as ``NaN`` / ``Infinity``, which JSON
does not have: strict parsers (JavaScript's ``JSON.parse``, jq, serde_json, Go) reject the whole
file. Reports hold such values legitimately (the PSNR of identical frames is infinite, an ST-IoU
whose two masks are empty is NaN), so ``json_safe`` turns every non-finite float into ``null``,
and the dump runs with ``allow_nan=False``: a value that slips past raises instead of writing an
invalid file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps", "json_safe", "write_json"]


def json_safe(x: Any) -> Any:
    """``x`` with NaN / +-inf floats as None, NumPy scalars and arrays as Python values, tuples as
    lists; dict keys and everything else are left as they are."""
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def dumps(obj: Any, *, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (see ``json_safe``), with a final newline."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``dumps(obj)`` to ``path`` (parent directories created); returns the path."""
    path = Path(path)
    text = dumps(obj, indent=indent)  # before touching the file: a failure leaves no half file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
