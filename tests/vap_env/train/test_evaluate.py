"""Acceptance evaluation: rollouts from the first frame, baselines, metrics with their mask source."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vap_env.cli import main as cli_main
from vap_env.models import load_world_model
from vap_env.train.evaluate import (
    EvalConfig,
    evaluate,
    format_report,
    rollout_skeleton,
    vae_reconstruction,
)


def test_rollout_feeds_back_the_last_frame_and_follows_the_seed():
    wm = load_world_model("tiny")
    k, h, w = wm.config.chunk_frames, wm.config.height, wm.config.width
    g = np.random.default_rng(0)
    first = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
    skeleton = g.integers(0, 256, (1 + 2 * k, h, w, 3), dtype=np.uint8)
    video = rollout_skeleton(wm, first, skeleton, "pick can", seed=3, num_inference_steps=1)
    assert video.shape == (1 + 2 * k, h, w, 3) and video.dtype == np.uint8
    assert np.array_equal(video[0], first)
    # the same two chunks by hand: one generator seeded once, chunk 2 continues chunk 1's last frame
    gen = torch.Generator().manual_seed(3)
    chunk1 = wm.generate_chunk(
        torch.from_numpy(first)[None],
        torch.from_numpy(skeleton[: k + 1])[None],
        ["pick can"],
        generator=[gen],
        num_inference_steps=1,
    )
    chunk2 = wm.generate_chunk(
        chunk1[:, -1],
        torch.from_numpy(skeleton[k:])[None],
        ["pick can"],
        generator=[gen],
        num_inference_steps=1,
    )
    assert np.array_equal(torch.cat([chunk1[0], chunk2[0]]).numpy(), video[1:])
    with pytest.raises(ValueError, match="fewer than one chunk"):
        rollout_skeleton(wm, first, skeleton[:k], "pick can", seed=0)


def test_vae_reconstruction_is_chunkwise_and_close_for_the_trained_vae():
    wm = load_world_model("tiny-rt1")
    k, h, w = wm.config.chunk_frames, wm.config.height, wm.config.width
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)
    video = np.stack([np.roll(base, t, axis=1) for t in range(1 + 2 * k)])  # (1 + 2K, H, W, 3)
    out = vae_reconstruction(wm, video)
    assert out.shape == video.shape and out.dtype == np.uint8
    assert np.array_equal(out[0], video[0])  # the context frame is given, not reconstructed
    # chunk 2 is the VAE of frames K..2K alone: recomputing it by hand gives the same frames
    x2 = torch.from_numpy(video[k:]).permute(0, 3, 1, 2)[None].float() / 127.5 - 1.0
    from vap_env.models.world_model import frames_to_uint8

    with torch.no_grad():
        by_hand = frames_to_uint8(wm.decode_latents(wm.encode_video(x2)))[0, 1:].numpy()
    assert np.array_equal(out[1 + k :], by_hand)
    err = np.abs(out[1:].astype(int) - video[1:].astype(int)).mean()
    assert err < 25, err  # trained: 11 levels off on this gradient; the random-init VAE is 57 off


def _strict_loads(text: str) -> dict:
    """json.loads that rejects NaN / Infinity, as JavaScript's JSON.parse does."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def _check_report(report: dict) -> None:
    summary = report["summary"]
    assert set(summary) == {
        "model",
        "copy_last",
        "blank_skeleton",
        "vae_reconstruction",
        "recorded",
    }
    assert summary["recorded"]["ssim"]["value"] == pytest.approx(1.0)
    assert summary["recorded"]["psnr"]["value"] is None  # infinite: the truth against itself
    for name, variant in summary.items():
        assert variant["st_iou"]["mask_source"] == "sim" and variant["st_iou"]["n"] == 1
        assert 0.0 <= variant["st_iou"]["value"] <= 1.0
        assert 0.0 < variant["ssim"]["value"] <= 1.0
        assert name == "recorded" or math.isfinite(variant["psnr"]["value"])
    m = report["margins"]
    assert m["st_iou_minus_copy_last"] == pytest.approx(
        summary["model"]["st_iou"]["value"] - summary["copy_last"]["st_iou"]["value"]
    )
    assert m["st_iou_minus_blank_skeleton"] == pytest.approx(
        summary["model"]["st_iou"]["value"] - summary["blank_skeleton"]["st_iou"]["value"]
    )
    if len(report["episodes"]) == 1:  # one paired difference has no interval
        assert m["st_iou_minus_copy_last_ci"] is None
    for row in report["episodes"]:
        for name in summary:
            v = row[name]
            assert len(v["st_iou_by_chunk"]) == len(v["psnr_by_chunk"]) >= 1
            # ST-IoU pools intersections and unions over frames: a union-weighted mean of the
            # chunks' ST-IoUs, so it lies between the smallest and the largest
            chunks = [x for x in v["st_iou_by_chunk"] if not math.isnan(x)]
            assert min(chunks) - 1e-9 <= v["st_iou"] <= max(chunks) + 1e-9
    n_chunks = len(report["episodes"][0]["model"]["st_iou_by_chunk"])
    for name, e in report["by_chunk"].items():
        assert e["n"] == [len(report["episodes"])] * n_chunks
        if len(report["episodes"]) == 1:
            assert e["st_iou"] == report["episodes"][0][name]["st_iou_by_chunk"]
    assert report["by_chunk"]["recorded"]["psnr"] == [None] * n_chunks  # infinite
    text = format_report(report)
    assert "ST-IoU (sim)" in text and "blank_skeleton" in text and "target >= +0.15" in text
    assert f"{n_chunks} (n={len(report['episodes'])})" in text


def test_train_eval_command_through_the_env_writes_json(rt1_dataset_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["train", "eval", "--weights", "tiny", "--data-dir", str(rt1_dataset_dir)]
    argv += ["--split", "val", "--num-inference-steps", "1", "--rollout", "env"]
    argv += ["--json", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "copy_last" in printed
    # the table restates what was measured, as bench st-iou's does
    assert printed.rstrip().endswith(
        "World model 'tiny', rollout 'env' (VAP-RT1-v0), 1 episode of split 'val', mask source "
        "'sim', 64x80 frames."
    )
    report = _strict_loads(out.read_text())  # the recorded PSNR is infinite: null, not Infinity
    assert report["episodes"][0]["recorded"]["psnr"] is None
    assert "PSNR of identical frames is infinite" in report["notes"]["null"]
    assert report["config"]["split"] == "val" and report["config"]["rollout"] == "env"
    assert [r["episode_id"] for r in report["episodes"]] == ["val_000000"]
    assert report["env_id"] == "VAP-RT1-v0"  # from the dataset: no --env-id given
    _check_report(report)


def test_train_eval_replays_droid_data_through_the_droid_env(droid_dataset_dir):
    cfg = EvalConfig(
        weights="tiny",
        data_dir=str(droid_dataset_dir),
        split="val",
        max_episodes=1,
        num_inference_steps=1,
        rollout="env",
    )
    report = evaluate(cfg)
    assert report["env_id"] == "VAP-DROID-v0" and len(report["episodes"]) == 1
    assert "(VAP-DROID-v0)" in format_report(report)


def test_sam2_mask_source_options(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VAP_ENV_TRACEBACK", raising=False)
    base = ["train", "eval", "--weights", "tiny", "--data-dir", str(tmp_path)]
    for extra, message in (
        (["--mask-source", "sam2"], "--mask-source sam2 needs --sam2-checkpoint PATH"),
        (["--sam2-checkpoint", "s.pt"], "--sam2-checkpoint only applies to --mask-source sam2"),
        (["--mask-source", "sam3"], "unknown mask source 'sam3'"),
    ):
        with pytest.raises(SystemExit) as exit_:  # at argument time, before any model loads
            cli_main([*base, *extra])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    # the options reach SAM2MasksConfig: its checks are the end of the path here
    missing = tmp_path / "missing.pt"
    assert cli_main([*base, "--mask-source", "sam2", "--sam2-checkpoint", str(missing)]) == 1
    assert f"SAM 2 checkpoint {str(missing)!r} does not exist" in capsys.readouterr().err
    ckpt = tmp_path / "sam2.pt"
    ckpt.write_bytes(b"")
    cfg = EvalConfig(
        weights="tiny",
        data_dir=str(tmp_path),
        mask_source="sam2",
        sam2_checkpoint=str(ckpt),
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
    )
    assert cfg.mask_source_fields() == {
        "checkpoint": str(ckpt),
        "model_config": "configs/sam2.1/sam2.1_hiera_t.yaml",
        "device": "cpu",
    }
    try:
        import sam2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"vap-env\[sam2\]"):
            evaluate(cfg)


def test_control_scale_zero_makes_the_model_ignore_the_skeleton(rt1_dataset_dir, tmp_path):
    """With the ControlNet's residuals scaled to 0 the rollout equals the blanked-skeleton one."""
    reports = {}
    for scale in ("0", "1"):
        out = tmp_path / f"eval-{scale}.json"
        # trained weights: a freshly built ControlNet starts at zero residuals (zero-initialised output)
        argv = ["train", "eval", "--weights", "tiny-rt1", "--data-dir", str(rt1_dataset_dir)]
        argv += ["--split", "val", "--num-inference-steps", "1", "--control-scale", scale]
        assert cli_main([*argv, "--json", str(out)]) == 0
        reports[scale] = json.loads(out.read_text())
        assert reports[scale]["config"]["control_scale"] == float(scale)
    ep0, ep1 = reports["0"]["episodes"][0], reports["1"]["episodes"][0]
    assert ep0["model"] == ep0["blank_skeleton"]
    assert ep1["model"] != ep1["blank_skeleton"]
    with pytest.raises(ValueError, match="control_scale=nan"):
        EvalConfig(weights="tiny", data_dir=str(rt1_dataset_dir), control_scale=float("nan"))


def test_train_loss_command_is_seeded_and_compares_models(rt1_dataset_dir, tmp_path, capsys):
    from vap_env.train.evaluate import diffusion_loss

    out = tmp_path / "loss.json"
    argv = ["train", "loss", "--weights", "tiny-rt1", "--data-dir", str(rt1_dataset_dir)]
    argv += ["--split", "train", "--batches", "2", "--batch-size", "1", "--json", str(out)]
    assert cli_main(argv) == 0
    assert "diffusion loss" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["batches"] == 2 and result["clips"] == 2 and result["split"] == "train"
    kwargs = {"split": "train", "batches": 2, "batch_size": 1}
    again = diffusion_loss("tiny-rt1", str(rt1_dataset_dir), **kwargs)
    assert again["loss"] == result["loss"]  # same clips, noise and timesteps
    other_seed = diffusion_loss("tiny-rt1", str(rt1_dataset_dir), seed=5, **kwargs)
    untrained = diffusion_loss("tiny", str(rt1_dataset_dir), **kwargs)
    assert other_seed["loss"] != result["loss"]
    assert untrained["loss"] > 3 * result["loss"]  # the trained weights fit these clips far better
    with pytest.raises(ValueError, match="fewer than batch_size=4 clips"):
        diffusion_loss("tiny-rt1", str(rt1_dataset_dir), split="train", batch_size=4)
    # A clip cache written for another training config: the error names --train-config.
    from vap_env.data.clip_cache import write_clip_cache

    cache = write_clip_cache(
        rt1_dataset_dir, "train", tmp_path / "c.npz", height=64, width=80, progress=False
    )
    with pytest.raises(ValueError, match=r"skeleton_from_ground_truth.*--train-config <preset"):
        diffusion_loss("tiny-rt1", str(cache), split="train", batch_size=1, batches=1)
    # Fewer batches than asked are said, not only counted.
    argv[argv.index("--batches") + 1] = "999"
    assert cli_main(argv) == 0
    assert "clips for only" in capsys.readouterr().out


def test_margin_intervals_are_paired_over_episodes():
    from vap_env.train.evaluate import paired_margin_ci

    def row(model: float, copy: float) -> dict:
        return {"model": {"st_iou": model}, "copy_last": {"st_iou": copy}}

    # the episodes differ a lot, the model beats copy_last by exactly 0.1 on each: the paired
    # interval is (0.1, 0.1), where the two means' own intervals overlap widely
    rows = [row(0.2, 0.1), row(0.5, 0.4), row(0.9, 0.8), row(float("nan"), 0.3)]
    assert paired_margin_ci(rows, "copy_last") == pytest.approx([0.1, 0.1])
    mixed = [row(0.2, 0.1), row(0.5, 0.6), row(0.9, 0.8), row(0.4, 0.4)]
    lo, hi = paired_margin_ci(mixed, "copy_last")
    assert -0.1 <= lo < 0.025 < hi <= 0.1  # around the mean difference, 0.025
    assert paired_margin_ci(rows[:1], "copy_last") is None


def test_episode_seeds_of_two_runs_never_meet_and_rollout_typos_are_named():
    from vap_env.train.evaluate import EvalConfig, episode_seed, resolve_device

    assert [episode_seed(0, i) for i in range(3)] == [0, 1, 2]  # seed 0 keeps its old noise
    runs = [{episode_seed(s, i) for i in range(1000)} for s in (0, 1, 2)]
    assert not (runs[0] & runs[1] or runs[1] & runs[2] or runs[0] & runs[2])
    assert resolve_device("cpu") == "cpu" and resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="Did you mean 'env'"):
        EvalConfig(weights="tiny", data_dir="x", rollout="envv")
