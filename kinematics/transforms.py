"""Batched rigid-transform helpers (NumPy) shared by the robot model, cameras and the renderer.

Conventions used everywhere in ``kinematics``:

* A pose is ``[x, y, z, qx, qy, qz, qw]`` (pybullet's scalar-last quaternion order), shape ``(..., 7)``.
* ``rpy`` is URDF's fixed-axis roll-pitch-yaw: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``. This is the same
  matrix as scipy's ``Rotation.from_euler("xyz", [roll, pitch, yaw])`` (lowercase = extrinsic axes),
  which is the convention DROID uses for its ``cartesian_position`` and camera extrinsics.

pybullet offers the same operations one pose at a time; these are vectorised over leading axes because
trajectories are transformed thousands of times per second by the skeleton renderer.
"""

from __future__ import annotations

import numpy as np


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions. quat: (..., 4) xyzw -> (..., 3, 3)."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty((*q.shape[:-1], 3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - z * w)
    out[..., 0, 2] = 2 * (x * z + y * w)
    out[..., 1, 0] = 2 * (x * y + z * w)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - x * w)
    out[..., 2, 0] = 2 * (x * z - y * w)
    out[..., 2, 1] = 2 * (y * z + x * w)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions (xyzw, w >= 0) from rotation matrices. rot: (..., 3, 3) -> (..., 4)."""
    m = np.asarray(rot, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Shepperd's method: four candidate formulas, each well conditioned when its pivot (w, x, y or
    # z) is the largest; compute all (branch-free, vectorised) and keep the best per matrix.
    pivots = np.stack([m00 + m11 + m22, m00 - m11 - m22, m11 - m00 - m22, m22 - m00 - m11], -1)
    s = 2.0 * np.sqrt(np.maximum(1.0 + pivots, 1e-12))  # (..., 4)
    cand = (
        np.stack(
            [
                np.stack([m21 - m12, m02 - m20, m10 - m01, s[..., 0] ** 2 / 4], -1),
                np.stack([s[..., 1] ** 2 / 4, m01 + m10, m02 + m20, m21 - m12], -1),
                np.stack([m01 + m10, s[..., 2] ** 2 / 4, m12 + m21, m02 - m20], -1),
                np.stack([m02 + m20, m12 + m21, s[..., 3] ** 2 / 4, m10 - m01], -1),
            ],
            -2,
        )
        / s[..., :, None]
    )  # (..., 4 candidates, 4)
    best = np.argmax(pivots, axis=-1)[..., None, None]
    q = np.take_along_axis(cand, best, axis=-2)[..., 0, :]
    q = np.where(q[..., 3:4] < 0, -q, q)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """Homogeneous transforms from poses. pose: (..., 7) -> (..., 4, 4)."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros((*pose.shape[:-1], 4, 4))
    out[..., :3, :3] = quat_to_matrix(pose[..., 3:])
    out[..., :3, 3] = pose[..., :3]
    out[..., 3, 3] = 1.0
    return out


def matrix_to_pose(mat: np.ndarray) -> np.ndarray:
    """Poses from homogeneous transforms. mat: (..., 4, 4) -> (..., 7)."""
    mat = np.asarray(mat, dtype=np.float64)
    return np.concatenate([mat[..., :3, 3], matrix_to_quat(mat[..., :3, :3])], axis=-1)


def rpy_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """Rotation matrices from fixed-axis roll-pitch-yaw. rpy: (..., 3) -> (..., 3, 3)."""
    rpy = np.asarray(rpy, dtype=np.float64)
    cr, sr = np.cos(rpy[..., 0]), np.sin(rpy[..., 0])
    cp, sp = np.cos(rpy[..., 1]), np.sin(rpy[..., 1])
    cy, sy = np.cos(rpy[..., 2]), np.sin(rpy[..., 2])
    out = np.empty((*rpy.shape[:-1], 3, 3))
    out[..., 0, 0] = cy * cp
    out[..., 0, 1] = cy * sp * sr - sy * cr
    out[..., 0, 2] = cy * sp * cr + sy * sr
    out[..., 1, 0] = sy * cp
    out[..., 1, 1] = sy * sp * sr + cy * cr
    out[..., 1, 2] = sy * sp * cr - cy * sr
    out[..., 2, 0] = -sp
    out[..., 2, 1] = cp * sr
    out[..., 2, 2] = cp * cr
    return out


def matrix_to_rpy(rot: np.ndarray) -> np.ndarray:
    """Fixed-axis roll-pitch-yaw from rotation matrices (inverse of ``rpy_to_matrix``). (..., 3, 3) -> (..., 3)."""
    rot = np.asarray(rot, dtype=np.float64)
    pitch = np.arcsin(np.clip(-rot[..., 2, 0], -1.0, 1.0))
    roll = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    yaw = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    return np.stack([roll, pitch, yaw], axis=-1)


def xyz_rpy_to_matrix(xyz: np.ndarray, rpy: np.ndarray) -> np.ndarray:
    """Homogeneous transforms from a translation and fixed-axis rpy. (..., 3), (..., 3) -> (..., 4, 4)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    rot = rpy_to_matrix(rpy)
    out = np.zeros((*rot.shape[:-2], 4, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = xyz
    out[..., 3, 3] = 1.0
    return out


def invert(mat: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms. mat: (..., 4, 4) -> (..., 4, 4)."""
    mat = np.asarray(mat, dtype=np.float64)
    out = np.zeros_like(mat)
    rt = np.swapaxes(mat[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rt, mat[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def transform_points(mat: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply rigid transforms to points. mat: (..., 4, 4), points: (..., 3) -> (..., 3) (broadcasting)."""
    mat = np.asarray(mat, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...j->...i", mat[..., :3, :3], points) + mat[..., :3, 3]


def rotation_error(rot_target: np.ndarray, rot_current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates ``rot_current`` onto ``rot_target``. (..., 3, 3) x2 -> (..., 3)."""
    r = np.asarray(rot_target) @ np.swapaxes(np.asarray(rot_current), -1, -2)
    q = matrix_to_quat(r)
    sin_half = np.linalg.norm(q[..., :3], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., 3:4])
    axis = np.divide(q[..., :3], sin_half, out=np.zeros_like(q[..., :3]), where=sin_half > 1e-12)
    return axis * angle


def rotation_angle_deg(quat_a: np.ndarray, quat_b: np.ndarray) -> np.ndarray:
    """Angle in degrees between two orientations given as xyzw quaternions. (..., 4) x2 -> (...,)."""
    a = np.asarray(quat_a, dtype=np.float64)
    b = np.asarray(quat_b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    dot = np.clip(np.abs(np.sum(a * b, axis=-1)), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(dot))
