"""Imports of optional heavy dependencies with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

# module -> (pip extra, what needs it)
_EXTRAS = {
    "tensorflow": ("data", "reading and writing TFDS/RLDS tfrecord shards (vap_env.data)"),
    "sam2": ("sam2", "the SAM2 mask source and the SAM2 teacher of the structure loss"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``vap-env[extra]`` that provides it."""
    if module == "tensorflow" and "tensorflow" not in sys.modules:
        # TensorFlow's C++ INFO/WARNING lines (CPU features, tfrecord buffers) flooded every
        # dataset read; a user's own TF_CPP_MIN_LOG_LEVEL still wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra, purpose = _EXTRAS.get(module, (None, "this feature"))
        hint = f"pip install 'vap-env[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtra(
            f"{module!r} is needed for {purpose} but is not installed: {hint}"
        ) from err
