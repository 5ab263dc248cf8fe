"""The ``vap-env`` argument parser: options come from the commands' Config dataclasses."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.speed_world_model import Config
from vap_env.cli import add_config_arguments, config_from_namespace, main


def _parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Config)
    return config_from_namespace(Config, parser.parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [["--batch-sizes", "1", "8"], ["--batch-sizes", "1,8"], ["--batch-sizes", "1,", "8"]],
)
def test_tuple_options_take_spaces_or_commas(argv):
    cfg = _parse(argv)
    assert cfg.batch_sizes == (1, 8)
    assert cfg.full_size_steps == (10, 25, 50)  # untouched tuple defaults stay tuples


def test_bad_tuple_item_is_an_error(capsys):
    with pytest.raises(SystemExit):
        _parse(["--batch-sizes", "one"])
    assert "--batch-sizes" in capsys.readouterr().err


def test_unknown_command_suggests_the_closest(capsys):
    assert main(["bench", "world-modle"]) != 0
    assert "world-model" in capsys.readouterr().err
