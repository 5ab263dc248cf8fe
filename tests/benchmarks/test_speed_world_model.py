"""The world-model speed benchmark runs end to end on the tiny preset and reports what it promises."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmarks.speed_world_model import Config, full_size_config, main, step_flops
from vap_env.models import load_model_preset


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_benchmark_writes_json(tmp_path, capsys):
    out = tmp_path / "wm.json"
    cfg = Config(
        batch_sizes=(1, 2), repeats=1, rollout_chunks=2, num_inference_steps=1, json=str(out)
    )
    assert main(cfg) == 0
    report = json.loads(out.read_text())
    assert [row["batch_size"] for row in report["batches"]] == [1, 2]
    for row in report["batches"]:
        assert row["seconds_per_chunk"] > 0 and row["peak_memory_mb"] > 0
        assert row["frames_per_second"] == pytest.approx(
            row["batch_size"] * 8 / row["seconds_per_chunk"]
        )
    assert report["rollout"]["chunks"] == 2 and len(report["rollout"]["cpu_seconds"]) == 2
    assert report["rollout"]["ratio_last_to_first"] > 0
    assert report["num_inference_steps"] == 1
    assert "s/chunk" in capsys.readouterr().out


def test_flop_count_scales_with_the_guidance_batch():
    tiny = load_model_preset("tiny")
    single, params = step_flops(tiny)
    guided, _ = step_flops(dataclasses.replace(tiny, guidance_scale=2.0))
    assert single > 0 and guided == 2 * single
    assert params["controlnet"] > 0


@pytest.mark.slow
def test_full_size_configs_count_flops_without_a_gpu(tmp_path):
    out = tmp_path / "full.json"
    cfg = Config(
        batch_sizes=(1,),
        repeats=1,
        rollout_chunks=0,
        num_inference_steps=1,
        full_size=True,
        device="cpu",
        json=str(out),
    )
    main(cfg)
    rows = {e["preset"]: e for e in json.loads(out.read_text())["full_size"]}
    assert set(rows) == {"cogvideox-2b", "cogvideox-5b-i2v"}
    assert rows["cogvideox-5b-i2v"]["tflops_per_step"] > 3 * rows["cogvideox-2b"]["tflops_per_step"]
    assert [r["steps"] for r in rows["cogvideox-2b"]["rows"]] == [10, 25, 50]
    assert full_size_config("cogvideox-5b-i2v", 256, 320).transformer["sample_width"] == 40
