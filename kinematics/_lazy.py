"""Package attributes resolved on first use (PEP 562), for packages whose submodules pull in heavy
optional dependencies (pybullet, TensorFlow) that many callers never need."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first access.

    The value is stored in ``namespace`` (the package's ``globals()``), so later lookups are plain
    attribute reads; an unknown name is the usual ``AttributeError``.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
