"""Frozen-dataclass configs and the named YAML presets under ``configs/``.

Every preset file ``configs/<group>/<name>.yaml`` is the serialisation of one frozen dataclass
(``EnvConfig``, ``WorldModelConfig``, ``TrainConfig``...). Loading is strict: an unknown key, a missing
required field or an unknown preset name raises an error that names the bad value and lists what is
allowed (with a "did you mean"), instead of silently guessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

T = TypeVar("T")


def did_you_mean(value: str, choices: list[str]) -> str:
    """Return a ' Did you mean ...?' hint for ``value`` among ``choices`` ('' when nothing is close)."""
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _scalar(tp: type, value: Any, where: str) -> Any:
    """Check (and lightly convert) one ``bool``/``int``/``float``/``str`` field value.

    A wrong type fails here, naming the key, rather than later inside numpy or torch with a
    message that names neither the key nor the file.
    """
    got = f"{value!r} ({type(value).__name__})"
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        if isinstance(value, numbers.Integral) and value in (0, 1):
            return bool(value)
        raise TypeError(f"{where}: expected true or false, got {got}")
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
            return int(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            if float(value).is_integer():  # 4.0, np.float32(4)
                return int(value)
        raise TypeError(f"{where}: expected an integer, got {got}")
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads 1e-4 (no dot) as a string: YAML 1.1 wants 1.0e-4.
            try:
                value = float(value)
            except ValueError:
                raise TypeError(f"{where}: expected a number, got {got}") from None
        if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            value = float(value)
            if math.isnan(value):
                raise ValueError(f"{where}: is NaN; give a number")
            return value
        raise TypeError(f"{where}: expected a number, got {got}")
    if tp is str and not isinstance(value, str):
        if isinstance(value, os.PathLike):  # a path field given a pathlib.Path
            return os.fspath(value)
        if type(value).__module__ == "torch" and type(value).__name__ == "device":
            return str(value)  # a device field given torch.device("cuda:1")
        raise TypeError(f"{where}: expected a string, got {got}")
    return value


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        # An empty YAML value (`max_steps:`) is null: only fields that allow None take it.
        if tp is Any or (origin in (typing.Union, types.UnionType) and type(None) in args):
            return None
        raise TypeError(
            f"{where}: expected {getattr(tp, '__name__', tp)}, got null (an empty value?)"
        )
    if tp in (bool, int, float, str):
        return _scalar(tp, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(
                f"{where}: {value!r} is not one of {list(args)}."
                + (did_you_mean(value, [str(a) for a in args]) if isinstance(value, str) else "")
            )
        return value
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
        if args:
            if len(value) != len(args):
                raise ValueError(
                    f"{where}: expected {len(args)} values, got {len(value)}: {value!r}"
                )
            return tuple(
                _coerce(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        return tuple(value)
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
    missing = [
        f
        for f in fields.values()
        if f.init
        and f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        what = "; ".join(
            f"{f.name} ({f.metadata['help']})" if "help" in f.metadata else f.name for f in missing
        )
        raise TypeError(f"{where}: missing required setting(s): {what}")
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
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config file {where}: not valid YAML ({problem})") from None
    if data is None:
        raise ValueError(
            f"config file {str(path)!r} is empty; it must set the {cls.__name__} fields"
        )
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {str(path)!r} must be a YAML mapping of {cls.__name__} fields (key: value), "
            f"got a {type(data).__name__}"
        )
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
