"""Action modes: the action space of one env step and the maths that turns an action chunk into joint states.

An env step consumes a chunk of K actions, one per generated frame (per control tick). Every mode
ends with one gripper channel (0.0 = open .. 1.0 = closed). The joint state each action leads to is
computed here; kinematics/ then renders exactly that state, and the env's ``proprio`` reports it.

| mode          | D     | layout                                                                      |
|---------------|-------|-----------------------------------------------------------------------------|
| `joint_pos`   | J + 1 | target joint positions (rad / m) + gripper position (absolute, 0..1)        |
| `joint_delta` | J + 1 | joint increments + gripper increment; joints stop at their limits           |
| `ee_delta`    | 7     | RT-1's convention: world_vector (3, metres, base frame, added to the TCP    |
|               |       | position), rotation_delta (3, axis-angle, R_next = Rot(rotation_delta) @ R  |
|               |       | in the base frame), gripper_closedness_action (1, relative:                 |
|               |       | g_next = clip(g + a, 0, 1), +1 closes, -1 opens)                            |
| `ee_pos`      | 7     | TCP position (3, base frame) + orientation as a rotation vector (3) +       |
|               |       | gripper position (absolute, 0..1)                                           |

End-effector modes solve IK (``robot.ik``) from the current joints for every action, so a chunk is
a sequence of small IK problems warm-started from the previous solution; joint limits are respected
and an unreachable target leaves the arm at the closest pose IK finds (the residual is reported).
The next ``ee_delta`` action is applied to the TCP pose the arm actually reached, so an IK residual
does not accumulate over a rollout.

Quaternions are [qx, qy, qz, qw] (pybullet's order, ``kinematics.transforms``), rotation vectors are
axis * angle (radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import cv2
import numpy as np

from kinematics.transforms import matrix_to_quat, quat_to_matrix
from vap_env.config import did_you_mean

if TYPE_CHECKING:
    from kinematics import RobotModel

__all__ = [
    "ACTION_MODES",
    "ActionLimits",
    "ActionMode",
    "EEDelta",
    "EEPosition",
    "JointDelta",
    "JointPosition",
    "JointTrajectory",
    "make_action_mode",
    "matrix_to_rotvec",
    "rotvec_to_matrix",
    "validate_chunk",
]


# ---------------------------------------------------------------------------------------------
# Rotations (float64 NumPy; called once per control tick, outside any network forward)
# ---------------------------------------------------------------------------------------------
def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) (axis * angle) -> rotation matrix (3, 3) via OpenCV's Rodrigues formula."""
    matrix, _ = cv2.Rodrigues(np.asarray(rotvec, dtype=np.float64).reshape(3, 1))
    return matrix


def matrix_to_rotvec(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> rotation vector (3,), angle in [0, pi]."""
    # Through the quaternion: cv2.Rodrigues loses precision for angles close to pi.
    qx, qy, qz, qw = matrix_to_quat(matrix)  # qw >= 0
    sin_half = math.sqrt(qx * qx + qy * qy + qz * qz)
    if sin_half < 1e-12:
        return np.zeros(3)
    angle = 2.0 * math.atan2(sin_half, qw)
    return np.array([qx, qy, qz]) * (angle / sin_half)


# ---------------------------------------------------------------------------------------------
# Action modes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionLimits:
    """Bounds of the action spaces (the env preset sets them; see configs/env/*.yaml)."""

    max_joint_delta: float = 0.25
    """`joint_delta`: largest joint increment per control tick (rad, or m for prismatic joints)."""
    max_translation: float = 1.0
    """`ee_delta`: bound of each world_vector component (m); 1.0 is RT-1's published action spec."""
    max_rotation: float = math.pi / 2
    """`ee_delta`: bound of each rotation_delta component (rad); pi/2 is RT-1's published action spec."""
    workspace_low: tuple[float, float, float] = (-1.5, -1.5, -0.5)
    """`ee_pos`: lower corner of the TCP target box in the base frame (m)."""
    workspace_high: tuple[float, float, float] = (1.5, 1.5, 2.0)
    """`ee_pos`: upper corner of the TCP target box in the base frame (m)."""

    def __post_init__(self) -> None:
        for name in ("max_joint_delta", "max_translation", "max_rotation"):
            if not getattr(self, name) > 0:  # NaN fails too; inf leaves that channel unbounded
                raise ValueError(f"action_limits.{name}={getattr(self, name)} must be > 0")
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if (
            low.shape != (3,)
            or high.shape != (3,)
            or not np.all(np.isfinite(low) & np.isfinite(high))
        ):
            raise ValueError(
                f"action_limits.workspace_low={self.workspace_low} and workspace_high="
                f"{self.workspace_high} must be 3 finite numbers each (x, y, z in m)"
            )
        if not np.all(low < high):
            raise ValueError(
                f"action_limits.workspace_low={self.workspace_low} must be below workspace_high="
                f"{self.workspace_high} on every axis"
            )


@dataclass(frozen=True)
class JointTrajectory:
    """The states one action chunk leads to (one row per action)."""

    q: np.ndarray  # (K, J) joint positions reached (within limits)
    gripper: np.ndarray  # (K,) gripper values in [0, 1]
    ik_pos_err_m: np.ndarray  # (K,) IK position residual (0 for joint modes)
    ik_rot_err_deg: np.ndarray  # (K,) IK orientation residual (0 for joint modes)


class ActionMode:
    """One action convention: its per-tick bounds and the chunk -> joint-trajectory maths.

    Args:
        robot: the kinematic model (``kinematics.load_robot``) whose joints the actions drive.
        limits: bounds of the action space.
    """

    name: ClassVar[str]
    absolute_gripper: ClassVar[bool]
    """Whether the gripper channel is a position (True) or an increment (False)."""

    def __init__(self, robot: RobotModel, limits: ActionLimits) -> None:
        self.robot = robot
        self.limits = limits
        self.lower = np.asarray(robot.lower, dtype=np.float64)
        self.upper = np.asarray(robot.upper, dtype=np.float64)

    @property
    def dim(self) -> int:
        """D, the size of one action."""
        return self.bounds()[0].shape[0]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low (D,), high (D,)) of one action, float64."""
        raise NotImplementedError

    def rollout(self, q: np.ndarray, gripper: float, actions: np.ndarray) -> JointTrajectory:
        """Apply a chunk ``actions`` (K, D) from joints ``q`` (J,) and ``gripper``; actions are valid."""
        raise NotImplementedError

    def _solve(
        self, targets: list[np.ndarray], q: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """IK for each target pose (7,) in turn, warm-started from the previous solution."""
        qs, pos_err, rot_err = [], [], []
        for target in targets:
            # No random restarts: an env arm moves continuously, it must not jump to another IK branch.
            result = self.robot.ik(target, q, restarts=0)
            q = np.clip(np.asarray(result.q, dtype=np.float64), self.lower, self.upper)
            qs.append(q)
            pos_err.append(result.pos_err_m)
            rot_err.append(result.rot_err_deg)
        return np.stack(qs), np.asarray(pos_err, float), np.asarray(rot_err, float)


class JointPosition(ActionMode):
    """`joint_pos`: absolute joint targets + absolute gripper (DROID's action convention)."""

    name = "joint_pos"
    absolute_gripper = True

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.append(self.lower, 0.0), np.append(self.upper, 1.0)

    def rollout(self, q: np.ndarray, gripper: float, actions: np.ndarray) -> JointTrajectory:
        zeros = np.zeros(len(actions))
        return JointTrajectory(
            np.clip(actions[:, :-1], self.lower, self.upper),
            np.clip(actions[:, -1], 0, 1),
            zeros,
            zeros,
        )


class JointDelta(ActionMode):
    """`joint_delta`: joint increments (stopping at the limits) + gripper increment."""

    name = "joint_delta"
    absolute_gripper = False

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        high = np.append(np.full(len(self.lower), self.limits.max_joint_delta), 1.0)
        return -high, high

    def rollout(self, q: np.ndarray, gripper: float, actions: np.ndarray) -> JointTrajectory:
        qs, gs = [], []
        for action in actions:
            q = np.clip(q + action[:-1], self.lower, self.upper)
            gripper = float(np.clip(gripper + action[-1], 0.0, 1.0))
            qs.append(q)
            gs.append(gripper)
        zeros = np.zeros(len(actions))
        return JointTrajectory(np.stack(qs), np.asarray(gs), zeros, zeros)


class EEDelta(ActionMode):
    """`ee_delta`: RT-1's world_vector / rotation_delta / gripper_closedness_action, through IK."""

    name = "ee_delta"
    absolute_gripper = False

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lim = self.limits
        high = np.array([lim.max_translation] * 3 + [lim.max_rotation] * 3 + [1.0])
        return -high, high

    def rollout(self, q: np.ndarray, gripper: float, actions: np.ndarray) -> JointTrajectory:
        qs, gs, pos_err, rot_err = [], [], [], []
        for action in actions:
            # Relative to the pose actually reached, so IK residuals do not accumulate.
            tcp = np.asarray(self.robot.ee_pose(q), dtype=np.float64)
            rotation = rotvec_to_matrix(action[3:6]) @ quat_to_matrix(tcp[3:])
            target = np.concatenate([tcp[:3] + action[:3], matrix_to_quat(rotation)])
            q_next, pe, re = self._solve([target], q)
            q = q_next[0]
            gripper = float(np.clip(gripper + action[6], 0.0, 1.0))
            qs.append(q)
            gs.append(gripper)
            pos_err.append(pe[0])
            rot_err.append(re[0])
        return JointTrajectory(
            np.stack(qs), np.asarray(gs), np.asarray(pos_err), np.asarray(rot_err)
        )


class EEPosition(ActionMode):
    """`ee_pos`: absolute TCP pose (position + rotation vector) + absolute gripper, through IK."""

    name = "ee_pos"
    absolute_gripper = True

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lim = self.limits
        low = np.concatenate([lim.workspace_low, [-math.pi] * 3, [0.0]])
        high = np.concatenate([lim.workspace_high, [math.pi] * 3, [1.0]])
        return low, high

    def rollout(self, q: np.ndarray, gripper: float, actions: np.ndarray) -> JointTrajectory:
        targets = [
            np.concatenate([a[:3], matrix_to_quat(rotvec_to_matrix(a[3:6]))]) for a in actions
        ]
        qs, pos_err, rot_err = self._solve(targets, q)
        return JointTrajectory(qs, np.clip(actions[:, 6], 0.0, 1.0), pos_err, rot_err)


ACTION_MODES: dict[str, type[ActionMode]] = {
    cls.name: cls for cls in (JointPosition, JointDelta, EEDelta, EEPosition)
}


def make_action_mode(name: str, robot: RobotModel, limits: ActionLimits) -> ActionMode:
    """Build the action mode ``name`` (one of ``ACTION_MODES``) for ``robot``."""
    if name not in ACTION_MODES:
        raise ValueError(
            f"unknown action_mode {name!r}; choose one of {sorted(ACTION_MODES)}."
            + did_you_mean(name, list(ACTION_MODES))
        )
    return ACTION_MODES[name](robot, limits)


def as_numbers(value: object, where: str, expected: str = "numbers") -> np.ndarray:
    """``value`` as a float64 array; strings, bools, complex numbers and ragged lists are errors.

    ``np.asarray(value, float64)`` would parse strings and take bools; the error names ``where``
    and what was ``expected`` (e.g. ``"a numeric array of shape (8, 7)"``).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:  # ragged lists; tensors needing grad
        raise ValueError(
            f"{where} must be {expected}, got {type(value).__name__}: {err} (pass a NumPy array, "
            "or a detached CPU tensor)"
        ) from None
    if raw.dtype.kind not in "fiu":
        raise ValueError(
            f"{where} must be {expected}, got {value!r} (dtype {raw.dtype})"
            if raw.ndim == 0
            else f"{where} must be {expected}, got dtype {raw.dtype}"
            + (" (a ragged or mixed list?)" if raw.dtype == object else "")
        )
    return raw.astype(np.float64)


def validate_chunk(
    action: object, low: np.ndarray, high: np.ndarray, *, clip: bool, where: str = "action"
) -> np.ndarray:
    """Check one action chunk against its bounds and return it as float64 (K, D) (or (D,)).

    Args:
        action: array-like (K, D) (NumPy, list, or a CPU torch tensor); or (D,) for one step.
        low, high: (K, D) bounds of the action space (or (D,) for one step).
        clip: clip out-of-range values instead of raising.
        where: name used in error messages (e.g. ``"actions[3]"`` in a vector env).

    Raises:
        ValueError: wrong shape, NaN / inf, or (with ``clip=False``) values outside the bounds; the
            message names the expected and the received value.
    """
    chunk = as_numbers(action, where, f"a numeric array of shape {low.shape}")
    if chunk.shape != low.shape:
        what = " (chunk_frames, action dim)" if low.ndim == 2 else " (one control step)"
        raise ValueError(f"{where} must have shape {low.shape}{what}, got {chunk.shape}")
    if not np.all(np.isfinite(chunk)):
        bad = np.argwhere(~np.isfinite(chunk))[:3].tolist()
        raise ValueError(
            f"{where} must be finite, got NaN/inf at index {bad} (e.g. {chunk[tuple(bad[0])]})"
        )
    if clip:
        return np.clip(chunk, low, high)
    # A float32 Box stores rounded bounds; tolerate that rounding, not more.
    tol = 1e-6 * np.maximum(1.0, np.abs(high - low))
    outside = (chunk < low - tol) | (chunk > high + tol)
    if np.any(outside):
        idx = tuple(np.argwhere(outside)[0].tolist())
        raise ValueError(
            f"{where}[{', '.join(map(str, idx))}] = {chunk[idx]:.6g} is outside the action space "
            f"[{low[idx]:.6g}, {high[idx]:.6g}] ({int(outside.sum())} value(s) out of range); "
            "pass clip_actions=True to clip instead"
        )
    return np.clip(chunk, low, high)
