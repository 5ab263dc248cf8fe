"""The ``vap-env`` argument parser: options come from the commands' Config dataclasses."""

from __future__ import annotations

import argparse
import re

import pytest

from benchmarks.speed_world_model import Config
from vap_env.cli import COMMANDS, add_config_arguments, config_from_namespace, main


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


def test_a_rejected_option_is_a_usage_error_not_a_traceback(capsys, tmp_path):
    # SynthConfig rejects the schema with a KeyError, the fractions with a ValueError
    for argv, message in (
        (["--schema", "rt2"], "unknown dataset schema 'rt2'"),
        (["--val-fraction", "0.6", "--test-fraction", "0.6"], "val_fraction = 0.6"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["data", "synth", "--out", str(tmp_path), *argv])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: vap-env data synth") and message in err
        assert "Traceback" not in err


def test_bad_input_found_while_running_is_one_line_not_a_traceback(capsys, monkeypatch):
    monkeypatch.delenv("VAP_ENV_TRACEBACK", raising=False)
    assert main(["train", "--config", "tiny-rt3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vap-env train: error: unknown train preset 'tiny-rt3'")
    assert "Did you mean 'tiny-rt1'?" in err and "Traceback" not in err
    monkeypatch.setenv("VAP_ENV_TRACEBACK", "1")
    with pytest.raises(KeyError, match="tiny-rt3"):
        main(["train", "--config", "tiny-rt3"])


def test_bench_alone_lists_the_commands(capsys):
    assert main(["bench", "--help"]) == 0
    assert "vap-env bench world-model" in capsys.readouterr().out
    assert main(["data", "--help"]) == 0
    assert "vap-env data cache" in capsys.readouterr().out


def test_the_command_list_says_what_each_command_does(capsys):
    assert main(["--help"]) == 0
    lines = {
        line.split("  ")[1].strip(): line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  vap-env ")
    }
    assert len(lines) == len(COMMANDS)
    assert lines["vap-env train export"].endswith("Export one training checkpoint as a world model")
    assert "Offline policy evaluation" in lines["vap-env bench ope"]


def test_yaml_mistakes_and_os_errors_are_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("VAP_ENV_TRACEBACK", raising=False)
    for text, message in (
        ("name: x\nbatch_size: [1\n", r"bad\.yaml:3:1: not valid YAML \(expected ',' or ']'"),
        ("- a\n- b\n", re.escape("a YAML mapping of TrainConfig fields (key: value), got a list")),
        ("", "is empty; it must set the TrainConfig fields"),
    ):
        (tmp_path / "bad.yaml").write_text(text)
        assert main(["train", "--config", str(tmp_path / "bad.yaml")]) == 1
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, err
    # An OSError (here: a hub id offline, not cached) is input too, not a crash.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code = main(["bench", "world-model", "--preset", "someone/not-cached", "--repeats", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "is not cached and the hub is offline" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("words", [["train", "eval"], ["bench", "st-iou"]])
def test_both_evaluation_commands_explain_their_options_alike(words, capsys):
    from benchmarks.masks import available_mask_sources

    with pytest.raises(SystemExit):
        main([*words, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help lines
    assert "--data-dir DATA_DIR" in text and "--sam2-checkpoint" in text and "--sam2-config" in text
    assert all(f"{name} (" in text for name in available_mask_sources())
    # the rollout modes are spelled out, with both commands' defaults
    assert "see module" not in text and "'skeleton' feeds it the skeleton video" in text
    assert "train eval defaults to skeleton" in text and "bench st-iou to env" in text


def test_required_options_say_so_instead_of_a_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "checkpoint-<step> (required)" in text and "(default: None)" not in text.split("--out")[0]
    )
