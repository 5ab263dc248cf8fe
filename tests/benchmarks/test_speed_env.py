"""`vap-env bench env` runs end to end on a few steps and writes its JSON (no timing assertions)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks.speed_env import Config, main
from vap_env.cli import main as cli_main


def test_bench_env_writes_json(tmp_path, capsys):
    out = tmp_path / "env.json"
    cfg = Config(num_envs=(1, 2), steps=2, warmup=1, num_inference_steps=1, json=str(out))
    assert main(cfg) == 0
    report = json.loads(out.read_text())
    rows = {r["num_envs"]: r for r in report["results"]}
    assert set(rows) == {1, 2}
    for n, r in rows.items():
        assert r["frames_per_s"] == r["env_steps_per_s"] * r["chunk_frames"]
        assert r["env_steps_per_s"] > 0 and r["seconds"] > 0
        assert r["world_model_s_per_step"] > 0 and r["kinematics_s_per_step"] > 0
        assert r["steps"] == 2 and r["num_envs"] == n
    assert rows[1]["frames_per_s_vs_first"] == 1.0
    assert "frames/s" in capsys.readouterr().out


def test_bench_env_cli_parses_options(tmp_path):
    out = tmp_path / "cli.json"
    argv = ["bench", "env", "--num-envs", "1", "--steps", "1", "--warmup", "0"]
    argv += ["--num-inference-steps", "1", "--action-mode", "joint_delta", "--json", str(out)]
    assert cli_main(argv) == 0
    report = json.loads(out.read_text())
    assert report["config"]["num_envs"] == [1]
    assert report["results"][0]["action_mode"] == "joint_delta"


def test_bench_env_threads_are_recorded_and_restored(tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "threads.json"
        cfg = Config(num_envs=(1,), steps=1, warmup=0, num_inference_steps=1, threads=1)
        assert main(dataclasses.replace(cfg, json=str(out))) == 0
        assert json.loads(out.read_text())["torch_threads"] == 1
        assert torch.get_num_threads() == 2  # the caller's setting is given back
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads=-1"):
        Config(threads=-1)
