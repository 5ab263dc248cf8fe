"""`vap-env demo` end to end on a reduced budget: data, per-skill table, policy rollout, report."""

from __future__ import annotations

import json

import pytest
import torch

from vap_env.cli import main as cli_main
from vap_env.commands.demo import Config, main
from vap_env.video import read_video


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    cfg = Config(
        out_dir=str(out),
        episodes=2,
        frames=9,
        num_inference_steps=1,
        videos=1,
        rollout_chunks=1,
        progress=False,
    )
    threads = torch.get_num_threads()
    assert main(cfg) == 0
    assert torch.get_num_threads() == threads  # the demo's threads=1 does not leak
    printed = capsys.readouterr().out
    assert "| all | model | 2 |" in printed and "report:" in printed

    st = json.loads((out / "st_iou" / "st_iou.json").read_text())
    assert st["n_episodes"] == 2 and st["split"] == "test" and st["env_id"] == "VAP-RT1-v0"
    assert {r["skill"] for r in st["episodes"]} == {"pick", "move_near"}  # the skills are cycled
    assert (out / "st_iou" / "st_iou.png").stat().st_size > 0
    assert len(st["outputs"]["videos"]) == 1

    demo = json.loads((out / "demo.json").read_text())
    rollout = demo["policy_rollout"]
    assert rollout["frames"] == 9 and rollout["skill"] == "open_drawer"
    assert rollout["ground_truth_state_success"] is True  # the noise-free skill in the simulator
    assert isinstance(rollout["blurred_start_detected_success"], bool)  # the detector's control
    video = read_video(out / "policy_rollout.mp4")  # ground truth | world model | skeleton
    assert video.shape[0] == 9 and video.shape[2] == 3 * video.shape[1] * 80 // 64
    assert set(demo["timings_s"]) == {"data", "st-iou", "policy rollout", "total"}

    report = (out / "report.md").read_text()
    for needle in ("## Per-skill ST-IoU", "st_iou/st_iou.png", "policy_rollout.mp4", "copy_last"):
        assert needle in report

    # A rerun with the same options reuses the rendered episodes.
    data_info = next((out / "data").rglob("dataset_info.json"))
    stamp = data_info.stat().st_mtime_ns
    from vap_env.commands.demo import make_data

    assert make_data(cfg) == data_info.parent
    assert data_info.stat().st_mtime_ns == stamp


def test_demo_options_are_checked():
    with pytest.raises(ValueError, match="episodes=0"):
        Config(episodes=0)
    with pytest.raises(SystemExit):
        cli_main(["demo", "--episodes", "two"])
    # The replay scores whole chunks: 10 frames would silently score 9.
    with pytest.raises(ValueError, match=r"--frames 10: .*chunk size 8 \(e\.g\. 9\)"):
        main(Config(frames=10, out_dir="unused"))
