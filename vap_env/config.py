"""Frozen-dataclass configs and the named YAML presets under ``configs/``.

Every preset file ``configs/<group>/<name>.yaml`` is the serialisation of one frozen dataclass
(``EnvConfig``, ``WorldModelConfig``, ``TrainConfig``...). Loading is strict: an unknown key, a missing
required field or an unknown preset name raises an error that names the bad value and lists what is
allowed (with a "did you mean"), instead of silently guessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def did_you_mean(value: str, choices: list[str]) -> str:
    """Return a ' Did you mean ...?' hint for ``value`` among ``choices`` ('' when nothing is close)."""
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(non_none[0], value, where)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build the dataclass ``cls`` from a plain mapping, rejecting unknown keys.

    Nested dataclass fields are built recursively; lists become tuples where the field is a tuple.
    """
    where = where or cls.__name__
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hints = "".join(did_you_mean(k, list(fields)) for k in unknown)
        raise KeyError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}.{hints}"
        )
    hints_by_name = typing.get_type_hints(cls)
    kwargs = {k: _coerce(hints_by_name.get(k, Any), v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"{where}: {err}") from err


def to_dict(obj: Any) -> dict[str, Any]:
    """Serialise a (nested) dataclass to plain YAML/JSON-friendly types (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def load_yaml(path: str | Path, cls: type[T]) -> T:
    """Load a YAML file into the dataclass ``cls`` (strict, see ``from_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    return from_dict(cls, data, where=f"{cls.__name__} from {path}")


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass as YAML (the inverse of ``load_yaml``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def preset_dir(group: str) -> Path:
    """The directory of one preset group (``env``, ``model``, ``train``...) inside the installed package."""
    root = resources.files("configs")
    return Path(str(root.joinpath(group)))


def preset_names(group: str) -> list[str]:
    """Names of the presets shipped in ``configs/<group>/``."""
    d = preset_dir(group)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_preset(group: str, name: str, cls: type[T]) -> T:
    """Load the named preset ``configs/<group>/<name>.yaml`` as ``cls``.

    Raises:
        KeyError: the preset does not exist; the message lists the shipped presets.
    """
    names = preset_names(group)
    if name not in names:
        raise KeyError(
            f"unknown {group} preset {name!r}; available: {names}.{did_you_mean(name, names)}"
        )
    return load_yaml(preset_dir(group) / f"{name}.yaml", cls)
