"""Benchmark the VAP envs: env steps/s and frames/s per num_envs, step-time drift, RSS growth.

``vap-env bench env --num-envs 1,8 --steps 100 --json out.json``

For each ``num_envs`` it builds one ``VAPVectorEnv`` (one world-model call per step for all envs),
takes ``warmup`` untimed steps, then times ``steps`` steps of a seeded small-motion policy (delta
modes: uniform noise at ``action_fraction`` of the action bounds; absolute modes: hold the current
state). Episodes are made long enough that no env resets while timed, so every step generates
``num_envs * K`` frames. Reported per ``num_envs``:

- ``env_steps_per_s`` = num_envs * steps / time, ``frames_per_s`` = that * K;
- ``last10_over_first10``: mean time of the last 10 timed steps / of the first 10, null under 20
  steps (a rollout must not slow down as it grows: no state may accumulate between chunks);
- ``rss_growth_mb``: resident memory after the timed steps minus before them;
- mean seconds per step in kinematics and in the world model (from the step info).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
from tqdm import tqdm

from vap_env.strict_json import write_json

__all__ = ["Config", "main", "run"]


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench env``."""

    num_envs: tuple[int, ...] = field(default=(1, 8), metadata={"help": "env counts to time"})
    steps: int = field(default=100, metadata={"help": "timed steps per env count"})
    warmup: int = field(default=2, metadata={"help": "untimed steps first"})
    preset: str = field(default="rt1", metadata={"help": "env preset: rt1 | droid"})
    weights: str | None = field(default=None, metadata={"help": "world model (None: the preset's)"})
    action_mode: str | None = field(
        default=None, metadata={"help": "action mode (None: the preset's)"}
    )
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "denoising steps per chunk (None: the model's default)"}
    )
    action_fraction: float = field(
        default=0.01,
        metadata={"help": "delta actions: noise amplitude as a fraction of the bounds"},
    )
    device: str = field(default="cpu", metadata={"help": "torch device of the world model"})
    threads: int = field(
        default=0, metadata={"help": "torch intra-op threads on the CPU; 0 = torch's default"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the envs and the policy"})
    json: str | None = field(default=None, metadata={"help": "write the results here"})

    def __post_init__(self) -> None:
        if not self.num_envs or min(self.num_envs) < 1:
            raise ValueError(f"num_envs must be positive counts, got {self.num_envs}")
        if self.threads < 0:
            raise ValueError(f"threads={self.threads} must be >= 0 (0: torch's default)")
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps must be >= 1 and warmup >= 0, got {self.steps}, {self.warmup}")
        if not 0 <= self.action_fraction <= 1:
            raise ValueError(
                f"--action-fraction {self.action_fraction}: a fraction of the action bounds, in [0, 1]"
            )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _actions(
    envs: Any, obs: dict[str, np.ndarray], rng: np.random.Generator, frac: float
) -> np.ndarray:
    """A seeded small-motion policy (num_envs, K, D) valid in every action mode."""
    space = envs.single_action_space
    mode = envs.core.action_mode
    n, k = envs.num_envs, envs.chunk_frames
    if not mode.absolute_gripper:  # delta modes: zero-centred noise
        return (rng.uniform(-1.0, 1.0, (n, *space.shape)) * frac * space.high).astype(np.float32)
    j, proprio = envs.core.num_joints, obs["proprio"].astype(np.float64)
    if mode.name == "joint_pos":
        hold = np.concatenate([proprio[:, :j], proprio[:, -1:]], axis=1)
    else:  # ee_pos: hold the current TCP pose
        from kinematics.transforms import quat_to_matrix
        from vap_env.actions import matrix_to_rotvec

        rotvecs = [matrix_to_rotvec(quat_to_matrix(p[j + 3 : j + 7])) for p in proprio]
        hold = np.concatenate([proprio[:, j : j + 3], np.stack(rotvecs), proprio[:, -1:]], axis=1)
    chunk = np.repeat(hold[:, None], k, axis=1)
    return np.clip(chunk, space.low, space.high).astype(np.float32)


def run(cfg: Config, num_envs: int) -> dict[str, Any]:
    """Time one ``VAPVectorEnv`` with ``num_envs`` envs; returns the figures of the module docstring."""
    from vap_env.vector_env import VAPVectorEnv

    overrides: dict[str, Any] = {
        "max_episode_steps": cfg.steps + cfg.warmup + 1,
        "num_inference_steps": cfg.num_inference_steps,
        "device": cfg.device,
        "info_timings": True,  # the kinematics / world-model split of a step
    }
    if cfg.weights is not None:
        overrides["weights"] = cfg.weights
    if cfg.action_mode is not None:
        overrides["action_mode"] = cfg.action_mode
    envs = VAPVectorEnv(num_envs=num_envs, preset=cfg.preset, **overrides)
    try:
        rng = np.random.default_rng(cfg.seed)
        obs, _ = envs.reset(seed=cfg.seed)
        for _ in range(cfg.warmup):
            obs, *_ = envs.step(_actions(envs, obs, rng, cfg.action_fraction))
        rss_before = _rss_mb()
        step_s, kin_s, wm_s = [], [], []
        for _ in tqdm(range(cfg.steps), desc=f"{num_envs} env(s)", leave=False):
            actions = _actions(envs, obs, rng, cfg.action_fraction)
            t0 = time.perf_counter()
            obs, _, _, _, info = envs.step(actions)
            step_s.append(time.perf_counter() - t0)
            kin_s.append(float(info["timings"]["kinematics"][0]))
            wm_s.append(float(info["timings"]["world_model"][0]))
        rss_after = _rss_mb()
        total = float(np.sum(step_s))
        window = min(10, cfg.steps)
        env_steps_per_s = num_envs * cfg.steps / total
        return {
            "num_envs": num_envs,
            "steps": cfg.steps,
            "chunk_frames": envs.chunk_frames,
            "resolution_hw": [envs.core.height, envs.core.width],
            "action_mode": envs.config.action_mode,
            "seconds": total,
            "env_steps_per_s": env_steps_per_s,
            "frames_per_s": env_steps_per_s * envs.chunk_frames,
            "seconds_per_step": total / cfg.steps,
            "kinematics_s_per_step": float(np.mean(kin_s)),
            "world_model_s_per_step": float(np.mean(wm_s)),
            # Overlapping windows (fewer than 20 steps) would compare a step with itself.
            "last10_over_first10": (
                float(np.mean(step_s[-window:]) / np.mean(step_s[:window]))
                if cfg.steps >= 2 * window
                else None
            ),
            "rss_before_mb": rss_before,
            "rss_growth_mb": rss_after - rss_before,
        }
    finally:
        envs.close()


def main(cfg: Config) -> int:
    """Run the benchmark for every ``cfg.num_envs``, print a table, write ``cfg.json``."""
    import torch

    from benchmarks.st_iou import torch_threads

    with torch_threads(cfg.threads):
        threads = torch.get_num_threads()  # what the runs used
        results = [run(cfg, n) for n in cfg.num_envs]
    base = results[0]["frames_per_s"]
    for r in results:
        r["frames_per_s_vs_first"] = r["frames_per_s"] / base
    print(
        f"{'envs':>5} {'steps/s':>9} {'frames/s':>9} {'x first':>8} {'kin s':>7} {'wm s':>7} "
        f"{'last/first':>10} {'RSS +MB':>8}"
    )
    for r in results:
        print(
            f"{r['num_envs']:>5} {r['env_steps_per_s']:>9.2f} {r['frames_per_s']:>9.1f} "
            f"{r['frames_per_s_vs_first']:>8.2f} {r['kinematics_s_per_step']:>7.3f} "
            f"{r['world_model_s_per_step']:>7.3f} {_ratio(r['last10_over_first10']):>10} "
            f"{r['rss_growth_mb']:>8.1f}"
        )
    if cfg.json:
        report = {
            "benchmark": "env",
            "config": dataclasses.asdict(cfg),
            "torch_threads": threads,
            "results": results,
        }
        write_json(cfg.json, report, indent=2)
    return 0
