"""A short built-in demo trajectory for any robot: reach down, grasp, lift, carry, release.

Used by ``vap-env skeleton`` and the skeleton benchmark when no recorded trajectory is given. The TCP
follows eased straight segments between waypoints (offsets from the home TCP position in the base
frame, home orientation kept) and each frame is solved by IK warm-started from the previous one, so
the joint trajectory is smooth and within limits.
"""

from __future__ import annotations

import numpy as np

from kinematics.robot import RobotModel

# (TCP offset from home in the base frame [m], gripper value) at evenly spaced key times.
_WAYPOINTS: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((0.0, 0.0, 0.0), 0.0),
    ((0.12, 0.04, -0.18), 0.0),
    ((0.12, 0.04, -0.18), 1.0),
    ((0.10, 0.10, -0.08), 1.0),
    ((0.02, 0.18, -0.12), 1.0),
    ((0.02, 0.18, -0.12), 0.0),
)


def demo_trajectory(robot: RobotModel, num_frames: int = 49) -> tuple[np.ndarray, np.ndarray]:
    """Joint and gripper trajectory of the demo motion. -> (q (T, J), gripper (T,)), T = num_frames."""
    if num_frames < 2:
        raise ValueError(f"num_frames = {num_frames}; the demo needs at least 2 frames")
    keys = np.linspace(0.0, 1.0, len(_WAYPOINTS))
    offsets = np.array([w[0] for w in _WAYPOINTS])  # (K, 3)
    grips = np.array([w[1] for w in _WAYPOINTS])  # (K,)
    t = np.linspace(0.0, 1.0, num_frames)
    seg = np.clip(np.searchsorted(keys, t, side="right") - 1, 0, len(keys) - 2)
    local = (t - keys[seg]) / (keys[seg + 1] - keys[seg])
    ease = 0.5 - 0.5 * np.cos(np.pi * local)  # zero velocity at each waypoint
    pos = offsets[seg] + ease[:, None] * (offsets[seg + 1] - offsets[seg])  # (T, 3)
    gripper = grips[seg] + ease * (grips[seg + 1] - grips[seg])  # (T,)

    home = robot.ee_pose(robot.home_q)
    q = np.empty((num_frames, robot.num_joints))
    prev = robot.home_q
    for i in range(num_frames):
        target = home.copy()
        target[:3] += pos[i]
        prev = robot.ik(target, prev, gripper=float(gripper[i]), restarts=0).q
        q[i] = prev
    return q, gripper
