"""Skeleton videos (visual action prompts) from the states an episode logs.

- RT-1 logs no joints: the gripper keypoints come from ``base_pose_tool_reached`` (``tcp_pose``)
  and ``gripper_closed`` through ``robot.gripper_keypoints`` (arm keypoints are NaN and not drawn),
  projected with the RT-1 head camera.
- DROID logs joints: FK of ``joint_position`` (``robot.keypoints``) with the episode's exterior
  camera (its extrinsics from the metadata).

``from_ground_truth=True`` draws the full arm of a synthetic RT-1 episode from the generator's
joints instead (the ground truth has them; the RLDS record does not).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from vap_env.data.episode import Episode


@functools.cache
def robot_model(name: str) -> Any:
    """A per-process ``kinematics`` RobotModel for ``name`` (loaded once)."""
    from kinematics import load_robot

    return load_robot(name)


@functools.lru_cache(maxsize=32)
def _renderer(robot: str, width: int, height: int) -> Any:
    from kinematics import SkeletonRenderer

    return SkeletonRenderer(robot_model(robot).spec, width, height)


def episode_keypoints(episode: Episode, from_ground_truth: bool = False) -> np.ndarray:
    """3D keypoints of every step in the base frame. -> (T, P, 3); NaN where a point is unknown."""
    robot = robot_model(episode.robot)
    joints = episode.joint_positions
    if joints is None and from_ground_truth and episode.ground_truth is not None:
        joints = episode.ground_truth.joint_positions
    if joints is not None:
        return robot.keypoints(np.asarray(joints, dtype=np.float64), episode.gripper)
    return robot.gripper_keypoints(np.asarray(episode.tcp_pose, dtype=np.float64), episode.gripper)


def render_skeleton(
    episode: Episode,
    width: int | None = None,
    height: int | None = None,
    *,
    from_ground_truth: bool = False,
    gripper_only: bool = False,
) -> np.ndarray:
    """The skeleton video of ``episode`` seen by its camera. -> (T, H, W, 3) uint8 (black background).

    ``width`` x ``height`` defaults to the frame size; the camera is resized proportionally.
    ``gripper_only`` drops the arm keypoints (RT-1 style prompt) even when joints are known.
    """
    w = episode.width if width is None else int(width)
    h = episode.height if height is None else int(height)
    camera = episode.camera.resized(w, h)
    points = episode_keypoints(episode, from_ground_truth)
    if gripper_only:
        points = np.where(robot_model(episode.robot).gripper_mask[None, :, None], points, np.nan)
    return _renderer(episode.robot, w, h).render(points, camera)
