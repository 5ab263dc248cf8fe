"""`vap-env bench st-iou`: per-skill table, outputs, agreement with the acceptance evaluation, sharding."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.st_iou import (
    VARIANTS,
    Config,
    main,
    per_skill_figure,
    plot_per_skill,
    summarize_rows,
    torch_threads,
)
from vap_env.cli import main as cli_main
from vap_env.train.evaluate import EvalConfig, evaluate
from vap_env.video import read_video


def _same(a: float | None, b: float | None) -> bool:
    """Equal as JSON writes them: non-finite values (PSNR of identical frames) become null."""
    a, b = (None if x is None or not math.isfinite(x) else x for x in (a, b))
    return a is b is None or (a is not None and b is not None and a == pytest.approx(b, abs=1e-6))


ROOT = Path(__file__).resolve().parents[2]


def _strict_loads(text: str) -> dict:
    """json.loads that rejects NaN / Infinity, as JavaScript's JSON.parse does."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_per_skill_report_and_outputs(rt1_dataset_dir, tmp_path, capsys):
    out = tmp_path / "st"
    cfg = Config(
        data_dir=str(rt1_dataset_dir),
        split="train",
        num_inference_steps=1,
        videos=1,
        out_dir=str(out),
        threads=1,
        progress=False,
    )
    assert main(cfg) == 0
    report = _strict_loads((out / "st_iou.json").read_text())
    assert "PSNR of identical frames is infinite" in report["notes"]["null"]
    assert report["rollout"] == "env" and report["env_id"] == "VAP-RT1-v0"
    assert report["mask_source"] == "sim" and report["n_episodes"] == 3
    rows = report["episodes"]
    assert [r["episode_id"] for r in rows] == ["train_000000", "train_000001", "train_000002"]
    skills = sorted({r["skill"] for r in rows})
    for variant in VARIANTS:
        table = report["per_skill"][variant]
        assert sorted(table) == sorted([*skills, "all"])
        assert table["all"]["st_iou"]["n"] + table["all"]["st_iou"]["n_excluded"] == 3
        assert table["all"]["st_iou"]["mask_source"] == "sim"
        for skill in skills:
            mine = [r[variant]["st_iou"] for r in rows if r["skill"] == skill]
            assert table[skill]["st_iou"]["value"] == pytest.approx(sum(mine) / len(mine))
            if len(mine) == 1:  # one episode: no interval to print
                assert table[skill]["st_iou"]["ci"] is None
            else:
                lo, hi = table[skill]["st_iou"]["ci"]
                assert lo <= table[skill]["st_iou"]["value"] <= hi
        # chunk by chunk: the mean over the episodes that reached each chunk (NaN left out)
        chunks = report["by_chunk"][variant]
        n_chunks = len(rows[0][variant]["st_iou_by_chunk"])
        assert chunks["n"] == [3] * n_chunks
        for c in range(n_chunks):
            mine = [r[variant]["st_iou_by_chunk"][c] for r in rows]
            mine = [v for v in mine if v is not None]  # NaN is written as null
            assert chunks["st_iou"][c] == pytest.approx(sum(mine) / len(mine))
    # copy_last repeats frame 0: its SSIM is far above a random-init model's noise
    assert report["per_skill"]["copy_last"]["all"]["ssim"]["value"] > 0.5
    table_md = (out / "st_iou.md").read_text()
    assert "ST-IoU [sim] (95% CI)" in table_md and "blank_skeleton" in table_md
    assert all(f"| {s} | model |" in table_md for s in skills)
    png = cv2.imread(report["outputs"]["png"])
    assert png is not None and png.shape[0] > 100
    (video_path,) = report["outputs"]["videos"]
    video = read_video(video_path)  # recorded | skeleton | generated, upscaled x4
    h, w = report["resolution_hw"]
    assert video.shape == (9, 4 * h, 3 * 4 * w, 3)
    skeleton_column = video[:, :, 4 * w : 8 * w]
    assert skeleton_column.max() > 100  # the prompt the env rendered is drawn
    printed = capsys.readouterr().out
    assert "| all | model |" in printed
    assert "rollout 'env' (VAP-RT1-v0), 3 episodes of split 'train', mask source 'sim'" in printed


def _fake_report(n_skills: int = 5) -> dict:
    """A report with synthetic numbers, enough for the figure."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2 * n_skills):
        row = {"skill": f"skill_{i % n_skills}"}
        for v in VARIANTS:  # 'recorded' scores highest, as in a real report
            top = v == "recorded"
            row[v] = {
                "st_iou": (0.9 if top else 0.3) + 0.05 * rng.random(),
                "psnr": 40.0 if top else 20.0 + rng.random(),
                "ssim": (0.99 if top else 0.8) + 0.01 * rng.random(),
            }
        rows.append(row)
    return {
        "per_skill": summarize_rows(rows, "sim"),
        "mask_source": "sim",
        "weights": "tiny",
        "n_episodes": len(rows),
        "rollout": "env",
    }


def test_the_legend_covers_no_panel(tmp_path):
    import matplotlib.pyplot as plt

    fig = per_skill_figure(_fake_report())
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
        assert fig.bbox.x1 >= box.x1  # beside the panels, not cut off
    finally:
        plt.close(fig)
    png = cv2.imread(str(plot_per_skill(_fake_report(), tmp_path / "p.png")))
    assert png is not None and png.shape[1] > png.shape[0]


def test_sam2_options(rt1_dataset_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VAP_ENV_TRACEBACK", raising=False)
    with pytest.raises(ValueError, match="--mask-source sam2 needs --sam2-checkpoint"):
        Config(data_dir="x", mask_source="sam2")
    with pytest.raises(ValueError, match="--sam2-config only applies to --mask-source sam2"):
        Config(data_dir="x", sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml")
    missing = tmp_path / "missing.pt"
    argv = ["bench", "st-iou", "--data-dir", str(rt1_dataset_dir), "--out-dir", str(tmp_path)]
    argv += ["--mask-source", "sam2", "--sam2-checkpoint", str(missing), "--no-progress"]
    assert cli_main(argv) == 1  # the checkpoint reached SAM2MasksConfig, before the model loaded
    assert f"SAM 2 checkpoint {str(missing)!r} does not exist" in capsys.readouterr().err
    help_text = Config.__dataclass_fields__["mask_source"].metadata["help"]
    assert all(f"{name} (" in help_text for name in ("sim", "motion", "sam2"))


def test_same_numbers_as_the_acceptance_evaluation(rt1_dataset_dir, tmp_path):
    cfg = Config(
        data_dir=str(rt1_dataset_dir),
        split="test",
        num_inference_steps=1,
        videos=0,
        out_dir=str(tmp_path),
        threads=1,
        progress=False,
    )
    main(cfg)
    mine = json.loads((tmp_path / "st_iou.json").read_text())["episodes"]
    from vap_env.core import resolve_weights
    from vap_env.env import load_env_config

    default_weights = resolve_weights(load_env_config("rt1").weights)  # what the benchmark loads
    with torch_threads(1):  # the same float reduction order as the benchmark's threads=1
        theirs = evaluate(
            EvalConfig(
                weights=default_weights,
                data_dir=str(rt1_dataset_dir),
                split="test",
                num_inference_steps=1,
                rollout="env",
            )
        )["episodes"]
    assert [r["episode_id"] for r in mine] == [r["episode_id"] for r in theirs]
    for a, b in zip(mine, theirs, strict=True):
        for variant in VARIANTS:
            for metric in ("st_iou", "psnr", "ssim"):
                assert _same(a[variant][metric], b[variant][metric]), (variant, metric)


def test_config_errors(rt1_dataset_dir, tmp_path):
    with pytest.raises(ValueError, match="rollout"):
        Config(data_dir="x", rollout="dream")
    with pytest.raises(KeyError, match="no split 'holdout'"):
        main(Config(data_dir=str(rt1_dataset_dir), split="holdout", out_dir=str(tmp_path)))
    with pytest.raises(SystemExit):  # --data-dir is required
        cli_main(["bench", "st-iou"])


@pytest.mark.slow
def test_two_processes_split_the_episodes(rt1_dataset_dir, tmp_path):
    out = tmp_path / "sharded"
    # Two CPU processes over gloo, as accelerate launch starts them on a multi-GPU machine.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["-m", "vap_env.cli", "bench", "st-iou", "--data-dir", str(rt1_dataset_dir)]
    cmd += ["--split", "train", "--num-inference-steps", "1", "--videos", "0", "--no-progress"]
    cmd += ["--threads", "1", "--out-dir", str(out)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("| all | model |") == 1  # only the main process reports
    sharded = json.loads((out / "st_iou.json").read_text())
    assert sharded["num_processes"] == 2 and sharded["n_episodes"] == 3
    single = tmp_path / "single"
    main(
        Config(
            data_dir=str(rt1_dataset_dir),
            split="train",
            num_inference_steps=1,
            videos=0,
            out_dir=str(single),
            threads=1,
            progress=False,
        )
    )
    alone = json.loads((single / "st_iou.json").read_text())
    assert [r["episode_id"] for r in sharded["episodes"]] == [
        r["episode_id"] for r in alone["episodes"]
    ]
    for a, b in zip(sharded["episodes"], alone["episodes"], strict=True):
        for variant in VARIANTS:
            for metric in ("st_iou", "psnr", "ssim"):
                assert _same(a[variant][metric], b[variant][metric]), (variant, metric)
