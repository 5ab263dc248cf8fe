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


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up lines off stderr, unless the user set the variables.

    TensorFlow only reads and writes tfrecord shards here (and TensorBoard's writer imports it
    for ``tf.io.gfile`` when it is installed), so its oneDNN math kernels never run: turning
    them off only silences the notice they print on every import. A user's own values win.
    Must run before ``tensorflow`` is first imported.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # CPU-feature and tfrecord INFO lines
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``vap-env[extra]`` that provides it."""
    if module == "tensorflow":
        quiet_tensorflow()
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra, purpose = _EXTRAS.get(module, (None, "this feature"))
        hint = f"pip install 'vap-env[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtra(
            f"{module!r} is needed for {purpose} but is not installed: {hint}"
        ) from err
