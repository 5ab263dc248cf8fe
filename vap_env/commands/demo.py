"""The main job: what the default world model does on held-out episodes, in a few minutes, offline.

    vap-env demo                      # -> runs/demo/report.md (+ JSON, PNG, mp4)

1. **Data**: renders ``--episodes`` held-out synthetic RT-1 episodes with the project's generator
   (``vap-env data synth``; a seed the shipped weights were not trained on) into
   ``runs/demo/data`` (kept and reused on a rerun with the same options).
2. **Per-skill ST-IoU** (``vap-env bench st-iou``): loads the weights ``gym.make("VAP-RT1-v0")``
   loads, replays every episode's actions from its first frame in the env and compares the
   generated video with the recording, per skill, next to the copy-last-frame and blanked-skeleton
   baselines -> ``runs/demo/st_iou/`` (table, JSON, bar chart, video grids).
3. **One policy rollout**: the scripted skill policy on a new scene, closed loop, in the world-model
   env and in the ground-truth simulator (``benchmarks.ground_truth_sim``), with the success
   detector of ``vap-env bench ope`` on both -> ``runs/demo/policy_rollout.mp4``.
4. ``runs/demo/report.md`` collects it all; the per-skill table is printed.

Nothing is downloaded. ``--episodes``, ``--frames``, ``--num-inference-steps`` and
``--rollout-chunks`` shrink the budget (the test runs 2 episodes of 9 frames, 1 denoising step).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vap_env.strict_json import write_json

# the env the demo shows; its registered defaults (weights included) are what gym.make gives
ENV_ID = "VAP-RT1-v0"
# Gaussian sigma (px) of the rollout's control: a soft but unchanged start frame must not pass
BLUR_SIGMA_PX = 2.0


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env demo``."""

    out_dir: str = field(default="runs/demo", metadata={"help": "output directory"})
    episodes: int = field(default=10, metadata={"help": "held-out synthetic episodes to evaluate"})
    frames: int = field(
        default=33, metadata={"help": "frames per episode (1 + a multiple of the chunk size 8)"}
    )
    data_seed: int = field(
        default=2025,
        metadata={"help": "seed of the demo episodes (the shipped weights were trained on seed 1)"},
    )
    weights: str | None = field(
        default=None, metadata={"help": f"world model (None: what gym.make({ENV_ID!r}) loads)"}
    )
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "denoising steps per chunk (None: the model's default)"}
    )
    videos: int = field(default=3, metadata={"help": "mp4 grids of the first N episodes"})
    policy: str = field(
        default="scripted:0", metadata={"help": "policy of the rollout (see vap-env bench ope)"}
    )
    rollout_skill: str = field(default="open_drawer", metadata={"help": "skill of the rollout"})
    rollout_chunks: int = field(default=4, metadata={"help": "env steps of the policy rollout"})
    seed: int = field(default=0, metadata={"help": "seed of the generation noise and the scene"})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads; 1 because on a busy 2-core machine a tiny chunk took "
            "4-11 CPU-s with 2 threads (oversubscribed) and 0.5 with 1; 0 = torch's default"
        },
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.frames < 2 or self.rollout_chunks < 1:
            raise ValueError(
                f"episodes={self.episodes} (>= 1), frames={self.frames} (>= 2) and "
                f"rollout_chunks={self.rollout_chunks} (>= 1): one is out of range"
            )


def make_data(cfg: Config) -> Path:
    """Render the held-out episodes (all in split ``test``) or reuse an identical earlier run."""
    from vap_env.data.synth.writer import SynthConfig, generate

    synth = SynthConfig(
        schema="rt1",
        episodes=cfg.episodes,
        out=str(Path(cfg.out_dir) / "data"),
        num_frames=cfg.frames,
        seed=cfg.data_seed,
        # Every episode is held out: 0.99 puts all of them in "test" (the split sizes are rounded).
        val_fraction=0.0,
        test_fraction=0.99,
        progress=cfg.progress,
    )
    final = Path(synth.out) / synth.dataset.name / synth.dataset.version
    recipe = final / "vap_synth_recipe.json"
    if recipe.is_file() and json.loads(recipe.read_text()) == synth.recipe():
        return final
    return generate(dataclasses.replace(synth, overwrite=True))


def policy_rollout(cfg: Config) -> dict[str, Any]:
    """The policy on a fresh scene in the world-model env and in the ground-truth simulator.

    Writes ``policy_rollout.mp4`` (ground truth | world model | skeleton prompt) and returns the
    detector's verdict on both videos and the simulator's own outcome.
    """
    import cv2
    import gymnasium as gym

    import vap_env  # noqa: F401  (registers the env ids)
    from benchmarks.ground_truth_sim import (
        GroundTruthSim,
        SuccessDetector,
        goal_region,
        make_scene_start,
    )
    from benchmarks.ope import PolicyContext, make_ope_policy, rollout_ground_truth
    from benchmarks.st_iou import upscale
    from vap_env.video import write_video

    kwargs: dict[str, Any] = {"num_inference_steps": cfg.num_inference_steps}
    if cfg.weights is not None:
        kwargs["weights"] = cfg.weights
    env = gym.make(ENV_ID, max_episode_steps=cfg.rollout_chunks, **kwargs)
    try:
        core, config = env.unwrapped.core, env.unwrapped.config
        k = core.chunk_frames
        start = make_scene_start(config.robot, cfg.rollout_skill, cfg.seed, core.width, core.height)
        goal = goal_region(start)
        ctx = PolicyContext(k, 1 + cfg.rollout_chunks * k, config.action_mode, env.action_space)
        policy = make_ope_policy(cfg.policy, start, ctx, cfg.seed)
        obs, _ = env.reset(seed=cfg.seed, options=start.reset_options())
        generated, skeleton = [obs["image"]], [obs["skeleton"]]
        for _ in range(cfg.rollout_chunks):
            obs, _, _, _, info = env.step(policy.act(obs))
            generated.extend(info["frames"])
            skeleton.extend(info["skeleton_frames"])
        sim = GroundTruthSim(config.robot, config.action_mode, config.action_limits)
        truth = rollout_ground_truth(
            sim, start, make_ope_policy(cfg.policy, start, ctx, cfg.seed), cfg.rollout_chunks
        )
        grid = np.concatenate([truth, np.stack(generated), np.stack(skeleton)], axis=2)
        path = Path(cfg.out_dir) / "policy_rollout.mp4"
        write_video(path, upscale(grid), config.render_fps)
        detector = SuccessDetector()
        return {
            "policy": cfg.policy,
            "skill": cfg.rollout_skill,
            "instruction": start.instruction,
            "frames": len(truth),
            "video": str(path),
            "ground_truth_state_success": sim.state_success(),
            "ground_truth_detected_success": detector(truth, goal)[0],
            "world_model_detected_success": detector(np.stack(generated), goal)[0],
            # A control for the line above: the untouched start frame, blurred. The detector reads
            # colour coverage, which blur alone can raise, and generated frames are soft; if it
            # calls this a success, the world-model verdict shows nothing.
            "blurred_start_detected_success": detector(
                cv2.GaussianBlur(start.image, (0, 0), BLUR_SIGMA_PX)[None], goal
            )[0],
        }
    finally:
        env.close()


def _verdict(success: bool) -> str:
    return "success" if success else "failure"


def write_report(
    cfg: Config, st: dict[str, Any], rollout: dict[str, Any], timings: dict[str, float]
) -> Path:
    """``report.md``: the per-skill table, the policy rollout, the files and how to reproduce."""
    from benchmarks.st_iou import format_table

    out = Path(cfg.out_dir)

    def rel(p: str) -> str:  # links relative to report.md
        return Path(p).relative_to(out).as_posix()

    trained = st["weights_dir"] is not None
    lines = [
        "# vap-env demo",
        "",
        f"World model: `{st['weights']}`"
        + (
            ""
            if trained
            else " (**random initialisation**: no trained weights are installed, so "
            "the numbers below only show that the pipeline runs)"
        )
        + f"; env `{ENV_ID}`; {st['n_episodes']} held-out synthetic episodes of {cfg.frames} "
        f"frames (seed {cfg.data_seed}) at {st['resolution_hw'][0]}x{st['resolution_hw'][1]}; "
        + (
            "the model's default denoising steps."
            if cfg.num_inference_steps is None
            else f"**{cfg.num_inference_steps} denoising step(s)** instead of the model's default."
        ),
        "",
        "## Per-skill ST-IoU",
        "",
        "Each episode is replayed in the env from its first frame and state (`reset(options="
        '{"episode": ep})` + its recorded actions); the generated frames are compared with the '
        "recorded ones. `copy_last` repeats the first frame (a model that ignores actions); "
        "`blank_skeleton` is the same model with a black skeleton prompt. Ceilings: "
        "`vae_reconstruction` (the recording through the model's VAE: what a transformer that "
        "predicted the latents exactly would score, on average; single episodes can beat it) and "
        "`recorded` (the recording itself: the best the metric gives). ST-IoU masks: "
        f"`{st['mask_source']}`"
        + (
            " (the simulator's gripper + object masks for the recording; for generated frames, "
            "their pixels labelled by the recording's colour prototypes)."
            if st["mask_source"] == "sim"
            else "."
        ),
        "",
        format_table(st),
        "",
        f"![per-skill bars]({rel(st['outputs']['png'])})",
        "",
        "Video grids (recorded | skeleton prompt | generated): "
        + ", ".join(f"[{Path(v).stem}]({rel(v)})" for v in st["outputs"]["videos"]),
        "",
        "## One policy rollout",
        "",
        f"`{rollout['policy']}` on a new scene, *{rollout['instruction']}*, {rollout['frames']} "
        f"frames, closed loop in the world-model env and in the ground-truth simulator: "
        f"[{rel(rollout['video'])}]({rel(rollout['video'])}) (ground truth | world model | skeleton).",
        "",
        f"- simulator outcome: {_verdict(rollout['ground_truth_state_success'])}",
        f"- success detector on the ground-truth video: {_verdict(rollout['ground_truth_detected_success'])}",
        f"- success detector on the world-model video: {_verdict(rollout['world_model_detected_success'])}",
        f"- control: the detector on the unchanged start frame blurred by {BLUR_SIGMA_PX} px: "
        f"{_verdict(rollout['blurred_start_detected_success'])}"
        + (
            " (blur alone passes the detector here, so the world-model verdict shows nothing)"
            if rollout["blurred_start_detected_success"]
            else ""
        ),
        "",
        "## Files and timings",
        "",
        f"- `{rel(st['outputs']['json'])}`: every episode and metric; "
        f"`{rel(st['outputs']['markdown'])}`: the table",
        "- " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "Reproduce a stage: `vap-env bench st-iou --data-dir "
        f"{Path(cfg.out_dir) / 'data'}` (add `--weights DIR`), `vap-env bench ope` for policy "
        "ranking agreement over many scenes.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(cfg: Config) -> int:
    """Run the stages of the module docstring; print the per-skill table."""
    from benchmarks.st_iou import torch_threads

    with torch_threads(cfg.threads):
        return _main(cfg)


def _main(cfg: Config) -> int:
    from benchmarks import st_iou
    from vap_env.env import load_env_config
    from vap_env.models.weights import world_model_config
    from vap_env.registration import ENV_IDS

    # Replay scores whole chunks only: a ragged tail would be dropped while the report counted it.
    k = world_model_config(
        cfg.weights or load_env_config(**ENV_IDS[ENV_ID][0]).weights
    ).chunk_frames
    if (cfg.frames - 1) % k:
        fit = 1 + k * max(1, round((cfg.frames - 1) / k))
        raise ValueError(
            f"--frames {cfg.frames}: episodes must be 1 + a multiple of the chunk size {k} (e.g. {fit})"
        )
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    begin = time.perf_counter()

    print(f"[1/3] rendering {cfg.episodes} held-out synthetic episodes -> {out / 'data'}")
    data = make_data(cfg)
    timings["data"] = time.perf_counter() - begin

    print("[2/3] per-skill ST-IoU: replaying each episode's actions in the env")
    t = time.perf_counter()
    report = st_iou.run(
        st_iou.Config(
            data_dir=str(data),
            weights=cfg.weights,
            split="test",
            num_inference_steps=cfg.num_inference_steps,
            seed=cfg.seed,
            videos=cfg.videos,
            out_dir=str(out / "st_iou"),
            device="cpu",
            threads=cfg.threads,
            progress=cfg.progress,
        )
    )
    if report is None:
        raise RuntimeError(
            "vap-env demo runs in one process; do not start it with accelerate launch"
        )
    timings["st-iou"] = time.perf_counter() - t

    print(f"[3/3] policy rollout: {cfg.policy} on a new {cfg.rollout_skill} scene")
    t = time.perf_counter()
    rollout = policy_rollout(cfg)
    timings["policy rollout"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - begin

    path = write_report(cfg, report, rollout, timings)
    write_json(
        out / "demo.json",
        {"config": dataclasses.asdict(cfg), "policy_rollout": rollout, "timings_s": timings},
    )
    print()
    print(st_iou.format_table(report))
    print(
        f"\npolicy rollout ({rollout['instruction']}): simulator "
        f"{_verdict(rollout['ground_truth_state_success'])}, detector on the world-model video: "
        f"{_verdict(rollout['world_model_detected_success'])} (control, start frame blurred by "
        f"{BLUR_SIGMA_PX} px: {_verdict(rollout['blurred_start_detected_success'])})"
    )
    print(f"\nreport: {path}  ({timings['total']:.0f} s)")
    return 0
