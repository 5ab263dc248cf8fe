"""Camera intrinsics given by users for datasets that log none (DROID), with no heavy imports.

Clip caches check them on machines without TensorFlow, so this module needs NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# DROID's RLDS release has no intrinsics; the ZED 2 left image at 320x180 (fx = fy = 130, centred),
# the same as the franka_panda spec's default camera.
DROID_DEFAULT_K = np.array([[130.0, 0.0, 160.0], [0.0, 130.0, 90.0], [0.0, 0.0, 1.0]])


def as_intrinsics(values: Any) -> np.ndarray | None:
    """A camera matrix K (3, 3) from ``(fx, fy, cx, cy)`` or a (3, 3) matrix; None / empty -> None.

    Config files and command lines give the four numbers; from Python a calibrated matrix works too
    (zero skew, last row ``[0, 0, 1]``: the skeleton renderer's pinhole model has no skew).
    """
    if values is None:
        return None
    try:
        k = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        k = np.full(1, np.nan)  # not numbers: reported below with the value
    if k.size == 0:
        return None
    if k.shape == (4,):
        fx, fy, cx, cy = k
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if (
        k.shape != (3, 3)
        or not np.isfinite(k).all()
        or k[0, 0] <= 0
        or k[1, 1] <= 0
        or k[0, 1] != 0
        or k[1, 0] != 0
        or not np.array_equal(k[2], [0.0, 0.0, 1.0])
    ):
        raise ValueError(
            f"intrinsics = {values!r} is not a camera matrix: give fx, fy, cx, cy (pixels, "
            "finite, fx and fy > 0; DROID data: at 320x180; from Python also a 3x3 K without skew)"
        )
    return k


def intrinsics_key(values: Any) -> list[float]:
    """``[fx, fy, cx, cy]`` of the K in effect for DROID (``DROID_DEFAULT_K`` when none is given):
    how a clip cache records and compares them."""
    k = as_intrinsics(values)
    k = DROID_DEFAULT_K if k is None else k
    return [float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])]
