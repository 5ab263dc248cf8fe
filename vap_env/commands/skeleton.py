"""Render a robot skeleton video (the visual action prompt) to mp4.

Without ``--npz`` a built-in demo motion (reach, grasp, lift, carry, release) is rendered. An ``.npz``
holds either ``q`` (T, J) joint positions or ``tcp_pose`` (T, 7) TCP poses ``[x,y,z,qx,qy,qz,qw]`` in
the robot base frame, plus ``gripper`` (T,) in [0, 1] (0 open, 1 closed; optional, default open). TCP
poses draw the gripper only (as for RT-1, which logs no joints) unless ``--arm-ik`` solves the arm.

    vap-env skeleton --robot google_robot --out skel.mp4
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kinematics import SkeletonRenderer, load_robot
from kinematics.robot import RobotModel
from kinematics.trajectory import demo_trajectory
from vap_env.video import VideoWriter


@dataclass(frozen=True)
class Config:
    """Options of ``vap-env skeleton``."""

    robot: str = field(
        default="google_robot", metadata={"help": "robot name or path of a keypoint-spec YAML"}
    )
    out: str = field(default="skeleton.mp4", metadata={"help": "output mp4 path"})
    npz: str | None = field(
        default=None,
        metadata={"help": "trajectory .npz with q (T,J) or tcp_pose (T,7), and gripper (T,)"},
    )
    width: int | None = field(
        default=None, metadata={"help": "image width; default: the robot camera's default size"}
    )
    height: int | None = field(default=None, metadata={"help": "image height; see width"})
    fps: int = field(default=10, metadata={"help": "frames per second of the mp4"})
    frames: int = field(
        default=49, metadata={"help": "demo length, or the first N frames of --npz (0 = all)"}
    )
    arm_ik: bool = field(
        default=False, metadata={"help": "with tcp_pose input, solve IK and draw the whole arm"}
    )

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value < 8:
                raise ValueError(f"--{name} {value}: image sizes must be >= 8 pixels")
        if self.fps < 1:
            raise ValueError(f"--fps {self.fps} must be >= 1")
        if Path(self.out).suffix.lower() not in (".mp4", ".mkv", ".mov"):  # H.264 containers
            raise ValueError(f"--out {self.out!r}: give a video file name such as skeleton.mp4")


def _trajectory(cfg: Config, robot: RobotModel) -> tuple[str, np.ndarray, np.ndarray]:
    """-> (kind 'q' | 'tcp_pose', values (T, J) or (T, 7), gripper (T,))."""
    if cfg.npz is None:
        if cfg.frames < 2:
            raise ValueError(f"--frames {cfg.frames}: the demo needs at least 2 frames")
        q, g = demo_trajectory(robot, cfg.frames)
        return "q", q, g
    path = Path(cfg.npz)
    if not path.is_file():
        raise FileNotFoundError(f"--npz {cfg.npz!r} does not exist")
    with np.load(path) as data:
        keys = set(data.files)
        kinds = [k for k in ("q", "tcp_pose") if k in keys]
        if len(kinds) != 1:
            raise ValueError(
                f"{path.name} has arrays {sorted(keys)}; it needs exactly one of 'q' (T, J) or "
                "'tcp_pose' (T, 7), plus optional 'gripper' (T,)"
            )
        values = np.asarray(data[kinds[0]], dtype=np.float64)
        gripper = (
            np.asarray(data["gripper"], dtype=np.float64).reshape(-1)
            if "gripper" in keys
            else np.zeros(len(values))
        )
    if values.ndim != 2 or len(gripper) != len(values):
        raise ValueError(
            f"{path.name}: {kinds[0]} has shape {values.shape} and gripper {gripper.shape}; "
            "expected (T, D) and (T,) with the same T"
        )
    if cfg.frames > 0:
        values, gripper = values[: cfg.frames], gripper[: cfg.frames]
    return kinds[0], values, gripper


def main(cfg: Config) -> int:
    """Render the trajectory's skeleton to ``cfg.out``; returns 0."""
    if cfg.fps <= 0:
        raise ValueError(f"--fps {cfg.fps} must be positive")
    with load_robot(cfg.robot, geometry=False) as robot:
        kind, values, gripper = _trajectory(cfg, robot)
        if kind == "tcp_pose" and cfg.arm_ik:
            qs, prev = [], robot.home_q
            for pose, g in zip(tqdm(values, desc="IK", unit="frame"), gripper, strict=True):
                prev = robot.ik(pose, prev, gripper=float(g)).q
                qs.append(prev)
            kind, values = "q", np.stack(qs)
        camera = robot.default_camera(cfg.width, cfg.height)
        renderer = SkeletonRenderer(robot.spec, camera.width, camera.height)
        chunk = 16
        with VideoWriter(cfg.out, cfg.fps) as writer:
            for s in tqdm(range(0, len(values), chunk), desc="skeleton", unit="chunk"):
                v, g = values[s : s + chunk], gripper[s : s + chunk]
                points = robot.keypoints(v, g) if kind == "q" else robot.gripper_keypoints(v, g)
                writer.write(renderer.render(points, camera))
    print(
        f"wrote {writer.frames_written} frames {camera.width}x{camera.height} of {robot.name} "
        f"to {cfg.out}"
    )
    return 0
