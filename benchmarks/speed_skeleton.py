"""Benchmark the skeleton prompt: FK -> project -> draw frames/s vs pybullet's own renderer.

``vap-env bench skeleton --json out.json``

In one process, on the built-in demo trajectory of ``robot`` (default the Google robot) at
``width`` x ``height`` (default 320x256, the RT-1 size) seen by the robot's default camera:

- ``skeleton_batched``: ``robot.keypoints(q, gripper)`` (pybullet FK) + ``SkeletonRenderer.render`` for
  all ``frames`` frames in one call each — how the env renders a chunk;
- ``skeleton_per_frame``: the same path called once per frame (T = 1), the worst case;
- ``pybullet_tiny_renderer``: the reference — ``getCameraImage`` with ``ER_TINY_RENDERER`` (the only
  renderer of a DIRECT client) of the same URDF, same camera and size, after ``resetJointState`` of
  each frame's joints (``RobotModel.set_joint_state``).

Each path is timed ``repeats`` times after one untimed warm-up; the best (least disturbed) time is
reported. ``speedup_*`` = skeleton fps / reference fps; the target is >= 10x.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pybullet as pb

from kinematics import SkeletonRenderer, load_robot
from kinematics.trajectory import demo_trajectory
from vap_env.strict_json import write_json

__all__ = ["Config", "main", "run"]

TARGET_SPEEDUP = 10.0


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env bench skeleton``."""

    robot: str = field(default="google_robot", metadata={"help": "robot name or spec YAML path"})
    width: int = field(default=320, metadata={"help": "image width"})
    height: int = field(default=256, metadata={"help": "image height"})
    frames: int = field(default=200, metadata={"help": "frames of the demo trajectory to render"})
    reference_frames: int = field(
        default=50, metadata={"help": "frames rendered by getCameraImage (slow; a subset)"}
    )
    repeats: int = field(default=3, metadata={"help": "timed repetitions; the best is reported"})
    json: str | None = field(default=None, metadata={"help": "write the results here"})

    def __post_init__(self) -> None:
        if self.frames < 2 or self.reference_frames < 1 or self.repeats < 1:
            raise ValueError(
                f"need frames >= 2, reference_frames >= 1, repeats >= 1; got {self.frames}, "
                f"{self.reference_frames}, {self.repeats}"
            )


def _best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: caches, first-call allocations
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(cfg: Config) -> dict[str, Any]:
    """Time the three paths of the module docstring; returns the report dict."""
    robot = load_robot(cfg.robot)  # with geometry: the reference renders the same body
    try:
        q, gripper = demo_trajectory(robot, cfg.frames)
        camera = robot.default_camera(cfg.width, cfg.height)
        renderer = SkeletonRenderer(robot.spec, cfg.width, cfg.height)

        def batched() -> np.ndarray:
            return renderer.render(robot.keypoints(q, gripper), camera)

        def per_frame() -> None:
            for t in range(cfg.frames):
                renderer.render(robot.keypoints(q[t : t + 1], gripper[t : t + 1]), camera)

        fk_s = _best_seconds(lambda: robot.keypoints(q, gripper), cfg.repeats)
        points = robot.keypoints(q, gripper)
        draw_s = _best_seconds(lambda: renderer.render(points, camera), cfg.repeats)
        batched_s = _best_seconds(batched, cfg.repeats)
        per_frame_s = _best_seconds(per_frame, cfg.repeats)

        n_ref = min(cfg.reference_frames, cfg.frames)
        view, proj = camera.pybullet_view_projection()
        client = robot.client_id

        def reference() -> None:
            for t in range(n_ref):
                robot.set_joint_state(q[t], float(gripper[t]))
                pb.getCameraImage(
                    cfg.width,
                    cfg.height,
                    view,
                    proj,
                    renderer=pb.ER_TINY_RENDERER,
                    physicsClientId=client,
                )

        ref_s = _best_seconds(reference, cfg.repeats)
    finally:
        robot.close()

    ref_fps = n_ref / ref_s
    batched_fps = cfg.frames / batched_s
    per_frame_fps = cfg.frames / per_frame_s
    return {
        "robot": robot.name,
        "resolution_wh": [cfg.width, cfg.height],
        "frames": cfg.frames,
        "reference_frames": n_ref,
        "skeleton_batched_fps": batched_fps,
        "skeleton_per_frame_fps": per_frame_fps,
        "fk_ms_per_frame": 1e3 * fk_s / cfg.frames,
        "draw_ms_per_frame": 1e3 * draw_s / cfg.frames,
        "pybullet_tiny_renderer_fps": ref_fps,
        "speedup_batched": batched_fps / ref_fps,
        "speedup_per_frame": per_frame_fps / ref_fps,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(batched_fps / ref_fps >= TARGET_SPEEDUP),
    }


def main(cfg: Config) -> int:
    """Run the benchmark, print a table, write ``cfg.json``."""
    r = run(cfg)
    w, h = r["resolution_wh"]
    print(
        f"skeleton benchmark: {r['robot']} at {w}x{h}, {r['frames']} frames (best of {cfg.repeats})"
    )
    print(f"{'path':<34} {'frames/s':>10} {'x reference':>12}")
    rows = [
        ("skeleton, batched (FK+project+draw)", r["skeleton_batched_fps"], r["speedup_batched"]),
        ("skeleton, one frame per call", r["skeleton_per_frame_fps"], r["speedup_per_frame"]),
        ("pybullet getCameraImage (Tiny)", r["pybullet_tiny_renderer_fps"], 1.0),
    ]
    for name, fps, ratio in rows:
        print(f"{name:<34} {fps:>10.1f} {ratio:>12.1f}")
    print(
        f"FK {r['fk_ms_per_frame']:.3f} ms/frame, draw {r['draw_ms_per_frame']:.3f} ms/frame; "
        f"target >= {TARGET_SPEEDUP:.0f}x: {'met' if r['meets_target'] else 'NOT met'}"
    )
    if cfg.json:
        report = {
            "benchmark": "skeleton",
            "config": dataclasses.asdict(cfg),
            "machine": {"python": platform.python_version(), "processor": platform.machine()},
            "results": r,
        }
        write_json(cfg.json, report, indent=2)
    return 0
