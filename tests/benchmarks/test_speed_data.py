"""vap-env bench data: runs end to end on a tiny synthetic directory and reports sane numbers."""

from __future__ import annotations

import json

import pytest

from benchmarks.speed_data import Config, main, run


def test_bench_data_on_existing_dir(rt1_dataset_dir, tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    cfg = Config(data_dir=str(rt1_dataset_dir), loader_workers=(0,), chunk_frames=4, json=str(out))
    assert main(cfg) == 0
    report = json.loads(out.read_text())
    assert "synth" not in report
    (row,) = report["clips"]
    assert row["workers"] == 0 and row["clips"] == 6 and row["clips_per_second"] > 0
    assert "clips/s" in capsys.readouterr().out


def test_bench_data_generates_when_no_dir_given() -> None:
    report = run(Config(episodes=1, frames=5, chunk_frames=4, loader_workers=(0,)))
    assert report["synth"]["episodes_per_minute"] > 0
    assert report["clips"][0]["clips"] == 1


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="frames > chunk_frames"):
        Config(frames=8, chunk_frames=8)
