"""RT-1's end-effector delta convention and the few batched conversions the data pipeline adds to
``kinematics.transforms`` (quaternions are [x, y, z, w], like pybullet and RT-1).

NumPy only, used at the edge of the pipeline (never inside a model's forward).
"""

from __future__ import annotations

import numpy as np

from kinematics.transforms import matrix_to_quat, matrix_to_rpy, pose_to_matrix, quat_to_matrix


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """Rotation vectors (axis * angle, angle in [0, pi]). m: (..., 3, 3) -> (..., 3)."""
    q = matrix_to_quat(m)
    xyz, w = q[..., :3], np.clip(q[..., 3], -1.0, 1.0)
    sin_half = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(sin_half, w)
    # angle / sin(angle/2) -> 2 as the angle -> 0 (small-angle limit keeps the result finite).
    scale = np.where(sin_half > 1e-9, angle / np.maximum(sin_half, 1e-12), 2.0)
    return xyz * scale[..., None]


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    """Rotation matrices of rotation vectors. v: (..., 3) -> (..., 3, 3)."""
    v = np.asarray(v, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = v / np.maximum(angle, 1e-12)
    half = angle / 2.0
    return quat_to_matrix(np.concatenate([axis * np.sin(half), np.cos(half)], -1))


def pose_to_xyz_rpy(pose: np.ndarray) -> np.ndarray:
    """[x, y, z, qx, qy, qz, qw] -> DROID's [x, y, z, roll, pitch, yaw] (extrinsic xyz). (..., 7) -> (..., 6)."""
    pose = np.asarray(pose, dtype=np.float64)
    return np.concatenate([pose[..., :3], matrix_to_rpy(quat_to_matrix(pose[..., 3:]))], -1)


def ee_delta_actions(tcp_pose: np.ndarray) -> np.ndarray:
    """RT-1 translation + rotation deltas between consecutive TCP poses, in the base frame.

    world_vector[t] = p[t+1] - p[t]; rotation_delta[t] = axis-angle of R[t+1] @ R[t].T; the last
    step (no successor) is zeros. tcp_pose: (T, 7) -> (T, 6).
    """
    tcp_pose = np.asarray(tcp_pose, dtype=np.float64)
    out = np.zeros((tcp_pose.shape[0], 6))
    if tcp_pose.shape[0] > 1:
        rot = pose_to_matrix(tcp_pose)[:, :3, :3]
        out[:-1, :3] = tcp_pose[1:, :3] - tcp_pose[:-1, :3]
        out[:-1, 3:] = matrix_to_axis_angle(rot[1:] @ np.swapaxes(rot[:-1], -1, -2))
    return out


def apply_ee_delta(tcp_pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Inverse of ``ee_delta_actions`` for one step: the pose after applying ``delta``.

    tcp_pose: (..., 7), delta: (..., 6) world_vector + rotation_delta -> (..., 7).
    """
    tcp_pose = np.asarray(tcp_pose, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    rot = axis_angle_to_matrix(delta[..., 3:]) @ quat_to_matrix(tcp_pose[..., 3:])
    return np.concatenate([tcp_pose[..., :3] + delta[..., :3], matrix_to_quat(rot)], -1)
