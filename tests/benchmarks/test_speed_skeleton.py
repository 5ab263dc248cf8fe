"""``vap-env bench skeleton`` runs end to end on a few frames and writes its JSON (no timing asserts)."""

from __future__ import annotations

import json

import pytest

from benchmarks.speed_skeleton import Config, main


def test_bench_skeleton_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    cfg = Config(frames=4, reference_frames=2, repeats=1, json=str(out))
    assert main(cfg) == 0
    report = json.loads(out.read_text())
    r = report["results"]
    assert report["benchmark"] == "skeleton" and r["resolution_wh"] == [320, 256]
    for key in ("skeleton_batched_fps", "skeleton_per_frame_fps", "pybullet_tiny_renderer_fps"):
        assert r[key] > 0
    assert r["speedup_batched"] == pytest.approx(
        r["skeleton_batched_fps"] / r["pybullet_tiny_renderer_fps"]
    )
    assert "x reference" in capsys.readouterr().out


def test_bench_skeleton_rejects_bad_config():
    with pytest.raises(ValueError, match="frames >= 2"):
        Config(frames=1)
