"""The ``vap-env`` command line: one entry point, subcommands as thin ``main(cfg)`` wrappers.

Each subcommand lives in its own module, which defines a frozen dataclass ``Config`` (one
``help`` metadata string per field) and ``main(cfg: Config) -> int``. The options are generated from
the dataclass, so a test calls ``main(Config(...))`` directly and the CLI adds nothing to test.
Modules are imported lazily: ``vap-env --help`` does not import torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# "words of the subcommand" -> module defining Config and main(cfg)
COMMANDS: dict[str, str] = {
    "skeleton": "vap_env.commands.skeleton",
    "data synth": "vap_env.commands.data_synth",
    "data cache": "vap_env.commands.data_cache",
    "train": "vap_env.commands.train",
    "train eval": "vap_env.commands.train_eval",
    "train loss": "vap_env.commands.train_loss",
    "train export": "vap_env.commands.train_export",
    "demo": "vap_env.commands.demo",
    "bench skeleton": "benchmarks.speed_skeleton",
    "bench world-model": "benchmarks.speed_world_model",
    "bench env": "benchmarks.speed_env",
    "bench data": "benchmarks.speed_data",
    "bench st-iou": "benchmarks.st_iou",
    "bench ope": "benchmarks.ope",
}


def _parse_tuple(item_type: type) -> Any:
    def parse(text: str) -> tuple:
        return tuple(item_type(x) for x in text.split(",") if x.strip())

    parse.__name__ = f"comma-separated {item_type.__name__}s"
    return parse


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, tp: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    help_text = field.metadata.get("help", "")
    has_default = (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )
    default = (
        field.default
        if field.default is not dataclasses.MISSING
        else (field.default_factory() if has_default else None)  # type: ignore[misc]
    )
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        tp = non_none[0] if len(non_none) == 1 else str
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    shown = f"(default: {default})" if has_default else "(required)"
    kwargs: dict[str, Any] = {"help": f"{help_text} {shown}", "dest": field.name}
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is tuple:
        # Both "--sizes 1 8" and "--sizes 1,8"; config_from_namespace joins the pieces.
        kwargs["type"] = _parse_tuple(args[0] if args else str)
        kwargs["nargs"] = "+"
    elif origin is typing.Literal:
        kwargs["choices"] = list(args)
        kwargs["type"] = type(args[0])
    elif tp in (int, float, str):
        kwargs["type"] = tp
    else:
        kwargs["type"] = str
    if has_default:
        kwargs["default"] = default
    else:
        kwargs["required"] = True
    parser.add_argument(flag, **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add one ``--option`` per field of the dataclass ``config_cls``."""
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        _add_field(parser, field, hints[field.name])


def config_from_namespace(config_cls: type, ns: argparse.Namespace) -> Any:
    """Build ``config_cls`` from parsed arguments (only its own fields are read)."""
    values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(ns, f.name)
        if isinstance(value, list):  # a tuple option given as several (comma-separated) words
            value = tuple(item for part in value for item in part)
        values[f.name] = value
    return config_cls(**values)


def _summary(module: str) -> str:
    """First line of a command module's docstring, read without importing it (torch is slow)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    # the line's own "``vap-env ...``" usage example repeats the command: the usage lists it
    return doc.strip().split("\n")[0].split(": ``")[0].rstrip(".:")


def _usage() -> str:
    lines = ["usage: vap-env <command> [options]", "", "commands:"]
    width = max(len(words) for words in COMMANDS)
    lines += [
        f"  vap-env {words.ljust(width)}  {_summary(module)}".rstrip()
        for words, module in COMMANDS.items()
    ]
    lines += ["", "Run 'vap-env <command> --help' for the options of one command."]
    return "\n".join(lines)


def _message(error: Exception) -> str:
    """An exception's message; a KeyError's str() would wrap it in quotes."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vap-env`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # "bench" and "data" only group commands: alone or with --help they list the commands.
    groups = {w.split()[0] for w in COMMANDS if " " in w} - set(COMMANDS)
    if (
        not argv
        or argv[0] in ("-h", "--help")
        or (argv[0] in groups and argv[1:] in ([], ["-h"], ["--help"]))
    ):
        print(_usage())
        return 0
    for n_words in (2, 1):
        words = " ".join(argv[:n_words])
        if len(argv) >= n_words and words in COMMANDS:
            break
    else:
        from vap_env.config import did_you_mean

        attempted = " ".join(argv[:2]) if argv[0] in groups else argv[0]
        print(
            f"vap-env: unknown command {attempted!r}.{did_you_mean(attempted, list(COMMANDS))}\n\n"
            + _usage(),
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[words])
    parser = argparse.ArgumentParser(
        prog=f"vap-env {words}", description=(module.__doc__ or "").strip().split("\n\n")[0]
    )
    add_config_arguments(parser, module.Config)
    ns = parser.parse_args(argv[n_words:])
    try:
        cfg = config_from_namespace(module.Config, ns)
    except (ValueError, KeyError, TypeError) as e:
        # A rejected option is a usage error: say it the way argparse does (exit status 2),
        # without a traceback.
        parser.error(_message(e))
    from vap_env._optional import MissingExtra

    try:
        return int(module.main(cfg) or 0)
    except KeyboardInterrupt:
        if os.environ.get("VAP_ENV_TRACEBACK"):  # where was it stuck?
            raise
        print(f"vap-env {words}: interrupted", file=sys.stderr)
        return 130
    except (
        ValueError,
        KeyError,
        OSError,  # FileNotFoundError, FileExistsError, and a hub id not on this machine offline
        MissingExtra,  # the message names `pip install 'vap-env[...]'`
        TypeError,
        FloatingPointError,
    ) as e:
        # Bad input found while running (an unknown preset, a missing directory...): the message
        # names the value and the fix, a traceback would bury it. VAP_ENV_TRACEBACK=1 shows it.
        if os.environ.get("VAP_ENV_TRACEBACK"):
            raise
        print(
            f"vap-env {words}: error: {_message(e)}\n(VAP_ENV_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
