"""The canonical episode schema every dataset is standardised into (one function per dataset).

``Episode`` (T steps; world frame = robot base frame; gripper 0.0 open .. 1.0 closed everywhere):

| field | shape / type | meaning |
|---|---|---|
| episode_id | str | ``"<split>_<index:06d>"``: the record's position in its split (stable for a directory) |
| dataset | str | ``"fractal20220817_data"`` or ``"droid"`` |
| robot | str | kinematics robot: ``"google_robot"`` or ``"franka_panda"`` |
| frames | (T, H, W, 3) uint8 | the dataset's main camera (RT-1 head camera, DROID exterior camera 1) |
| instruction | str | the language instruction |
| fps | float | control / camera rate: RT-1 3 Hz, DROID 15 Hz |
| actions | (T, D) float32 | in the env's action convention for the dataset (below) |
| action_mode | str | ``"ee_delta"`` (RT-1, D=7) or ``"joint_pos"`` (DROID, D=8) |
| tcp_pose | (T, 7) float32 | TCP pose in the base frame ``[x, y, z, qx, qy, qz, qw]`` |
| joint_positions | (T, J) float32 or None | arm joints when the dataset logs them (DROID; RT-1 does not) |
| gripper | (T,) float32 | gripper closedness, 0 open .. 1 closed |
| camera | ``kinematics.PinholeCamera`` | intrinsics + extrinsics of ``frames`` |
| skill | str | ``skill_from_instruction(instruction)`` |
| success | bool or None | the dataset's outcome where it records one (below) |
| ground_truth | ``GroundTruth`` or None | synthetic datasets only |

Actions:
- RT-1 (``ee_delta``, D=7): ``world_vector`` (3) = p[t+1] - p[t] (base frame, metres);
  ``rotation_delta`` (3) = axis-angle of R[t+1] @ R[t].T (base frame); ``gripper_closedness_action``
  (1) = g[t+1] - g[t] (relative: +1 close, -1 open, RT-1's own convention); the last step is zeros.
  Replaying them from ``tcp_pose[0]`` with ``rotations.apply_ee_delta`` reproduces ``tcp_pose``.
- DROID (``joint_pos``, D=8): ``action_dict/joint_position`` (7) + ``action_dict/gripper_position``
  (1), the target for the next step.

Success: DROID — ``"/success/" in episode_metadata/file_path``; RT-1 records no outcome, so it is
``None`` unless a synthetic ground truth supplies the scene's outcome.

``GroundTruth`` (synthetic datasets; stored as ``<version dir>/ground_truth/<split>/<episode_id>.npz``):
per-frame ``gripper_masks`` and ``object_masks`` (T, H, W) bool at the frame resolution, the
generator's ``joint_positions`` (T, J) (the RT-1 schema has no joints: the env can start exactly from
them), ``gripper`` (T,), ``scene`` (the JSON scene description: objects, drawers, light, the actual
camera, the target of the skill: enough for a scripted policy to redo the skill), ``skill`` and the
scene's ``success`` outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kinematics import PinholeCamera


@dataclass
class GroundTruth:
    """What the synthetic renderer knows and a real dataset does not (see the module docstring)."""

    gripper_masks: np.ndarray  # (T, H, W) bool
    object_masks: np.ndarray  # (T, H, W) bool
    joint_positions: np.ndarray  # (T, J) float32
    gripper: np.ndarray  # (T,) float32
    scene: dict[
        str, Any
    ]  # JSON-serialisable scene description (vap_env.data.synth.scene.SceneSpec)
    skill: str
    success: bool

    def __post_init__(self) -> None:
        t = self.gripper_masks.shape[0]
        for name in ("object_masks", "joint_positions", "gripper"):
            if getattr(self, name).shape[0] != t:
                raise ValueError(
                    f"GroundTruth.{name} has {getattr(self, name).shape[0]} steps but "
                    f"gripper_masks has {t}: every per-frame field needs the same T"
                )

    def save(self, path: str | Path) -> None:
        """Write as a compressed ``.npz`` (masks bit-packed; the scene as JSON text)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            gripper_masks=np.packbits(self.gripper_masks, axis=-1),
            object_masks=np.packbits(self.object_masks, axis=-1),
            mask_width=np.int64(self.gripper_masks.shape[-1]),
            joint_positions=self.joint_positions.astype(np.float32),
            gripper=self.gripper.astype(np.float32),
            scene=np.array(json.dumps(self.scene)),
            skill=np.array(self.skill),
            success=np.bool_(self.success),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a file written by ``save``."""
        with np.load(Path(path)) as z:
            width = int(z["mask_width"])
            return cls(
                gripper_masks=np.unpackbits(z["gripper_masks"], axis=-1, count=width).astype(bool),
                object_masks=np.unpackbits(z["object_masks"], axis=-1, count=width).astype(bool),
                joint_positions=z["joint_positions"],
                gripper=z["gripper"],
                scene=json.loads(str(z["scene"])),
                skill=str(z["skill"]),
                success=bool(z["success"]),
            )


@dataclass
class Episode:
    """One standardised episode (the table in the module docstring is the spec)."""

    episode_id: str
    dataset: str
    robot: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    instruction: str
    fps: float
    actions: np.ndarray  # (T, D) float32
    action_mode: str
    tcp_pose: np.ndarray  # (T, 7) float32
    joint_positions: np.ndarray | None  # (T, J) float32
    gripper: np.ndarray  # (T,) float32
    camera: PinholeCamera
    skill: str
    success: bool | None
    ground_truth: GroundTruth | None = None
    source: str = field(default="", compare=False)  # "<shard file>:<record index>" for messages

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"Episode {self.episode_id}: frames must be (T, H, W, 3) uint8, got "
                f"{self.frames.shape} {self.frames.dtype}"
            )
        t = self.frames.shape[0]
        per_step = {"actions": self.actions, "tcp_pose": self.tcp_pose, "gripper": self.gripper}
        if self.joint_positions is not None:
            per_step["joint_positions"] = self.joint_positions
        for name, value in per_step.items():
            if value.shape[0] != t:
                raise ValueError(
                    f"Episode {self.episode_id}: {name} has {value.shape[0]} steps, frames has {t}"
                )
        if self.tcp_pose.shape[1:] != (7,):
            raise ValueError(
                f"Episode {self.episode_id}: tcp_pose must be (T, 7), got {self.tcp_pose.shape}"
            )

    @property
    def num_steps(self) -> int:
        """T, the number of steps (= frames)."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height H in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width W in pixels."""
        return int(self.frames.shape[2])
