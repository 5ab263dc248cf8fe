"""The published RLDS schemas of RT-1 (``fractal20220817_data`` 0.1.0) and DROID (``droid`` 1.0.1).

Each schema is a ``tfds.features.FeaturesDict`` with the exact feature names, shapes, dtypes and
encodings of the public copy (``../shared/reference/rlds_schemas.md``), plus the facts a loader needs
(control rate, robot, which image is "the" camera). The synthetic writer serialises with these
FeaturesDicts and the loaders check records against them, so one table serves both directions.

Only tensorflow-datasets is imported here (no TensorFlow): building and (de)serialising
FeaturesDicts works without it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from vap_env.config import did_you_mean

F = tfds.features


def _tensor(*shape: int, dtype: Any = np.float32) -> F.Tensor:
    return F.Tensor(shape=tuple(shape), dtype=dtype)


def rt1_features() -> F.FeaturesDict:
    """The ``fractal20220817_data`` 0.1.0 features: one record = one episode, ``steps`` nested."""
    observation = F.FeaturesDict(
        {
            "image": F.Image(shape=(256, 320, 3), dtype=np.uint8, encoding_format="jpeg"),
            "natural_language_instruction": F.Text(),
            "natural_language_embedding": _tensor(512),
            "base_pose_tool_reached": _tensor(7),
            "gripper_closed": _tensor(1),
            "gripper_closedness_commanded": _tensor(1),
            "height_to_bottom": _tensor(1),
            "orientation_box": _tensor(2, 3),
            "orientation_start": _tensor(4),
            "robot_orientation_positions_box": _tensor(3, 3),
            "rotation_delta_to_go": _tensor(3),
            "src_rotation": _tensor(4),
            "vector_to_go": _tensor(3),
            "workspace_bounds": _tensor(3, 3),
        }
    )
    action = F.FeaturesDict(
        {
            "world_vector": _tensor(3),
            "rotation_delta": _tensor(3),
            "gripper_closedness_action": _tensor(1),
            "terminate_episode": _tensor(3, dtype=np.int32),
            "base_displacement_vector": _tensor(2),
            "base_displacement_vertical_rotation": _tensor(1),
        }
    )
    steps = F.Dataset(
        {
            "observation": observation,
            "action": action,
            "is_first": F.Scalar(dtype=np.bool_),
            "is_last": F.Scalar(dtype=np.bool_),
            "is_terminal": F.Scalar(dtype=np.bool_),
            "reward": F.Scalar(dtype=np.float32),
        }
    )
    return F.FeaturesDict({"steps": steps})


def droid_features() -> F.FeaturesDict:
    """The ``droid`` 1.0.1 features (1.0.1 adds building/collector/date and the camera extrinsics)."""
    image = F.Image(shape=(180, 320, 3), dtype=np.uint8, encoding_format="jpeg")
    f64 = np.float64
    observation = F.FeaturesDict(
        {
            "gripper_position": _tensor(1, dtype=f64),
            "cartesian_position": _tensor(6, dtype=f64),
            "joint_position": _tensor(7, dtype=f64),
            "wrist_image_left": image,
            "exterior_image_1_left": image,
            "exterior_image_2_left": image,
        }
    )
    action_dict = F.FeaturesDict(
        {
            "gripper_position": _tensor(1, dtype=f64),
            "gripper_velocity": _tensor(1, dtype=f64),
            "cartesian_position": _tensor(6, dtype=f64),
            "cartesian_velocity": _tensor(6, dtype=f64),
            "joint_position": _tensor(7, dtype=f64),
            "joint_velocity": _tensor(7, dtype=f64),
        }
    )
    steps = F.Dataset(
        {
            "is_first": F.Scalar(dtype=np.bool_),
            "is_last": F.Scalar(dtype=np.bool_),
            "is_terminal": F.Scalar(dtype=np.bool_),
            "language_instruction": F.Text(),
            "language_instruction_2": F.Text(),
            "language_instruction_3": F.Text(),
            "observation": observation,
            "action_dict": action_dict,
            "action": _tensor(7, dtype=f64),
            "discount": F.Scalar(dtype=np.float32),
            "reward": F.Scalar(dtype=np.float32),
        }
    )
    metadata = F.FeaturesDict(
        {
            "recording_folderpath": F.Text(),
            "file_path": F.Text(),
            "building": F.Text(),
            "collector_id": F.Text(),
            "date": F.Text(),
            "extrinsics_wrist_cam": _tensor(6, dtype=f64),
            "extrinsics_exterior_cam_1": _tensor(6, dtype=f64),
            "extrinsics_exterior_cam_2": _tensor(6, dtype=f64),
        }
    )
    return F.FeaturesDict({"steps": steps, "episode_metadata": metadata})


@dataclass(frozen=True)
class DatasetSchema:
    """Facts about one published dataset that the writer and the loaders share."""

    key: str  # short name on the command line: "rt1" | "droid"
    name: str  # the TFDS builder name, also the directory name
    version: str  # the TFDS version directory
    robot: str  # kinematics robot name
    fps: float  # control / camera rate (Hz)
    image_key: str  # the camera that becomes Episode.frames (inside steps/observation)
    image_shape: tuple[int, int, int]  # (H, W, 3)
    action_mode: str  # the env action mode the standardised actions follow
    action_dim: int  # D of Episode.actions
    # The robot link whose pose ``observation/cartesian_position`` logs (None: no such feature).
    # DROID logs the flange (Polymetis' ``panda_link8``), not the TCP.
    cartesian_link: str | None = None

    def features(self) -> F.FeaturesDict:
        """A fresh FeaturesDict of this schema."""
        return _FEATURES[self.name]()

    def cartesian_to_tcp(self) -> np.ndarray:  # (4, 4)
        """The fixed transform from the frame ``cartesian_position`` logs to the robot's TCP.

        ``T_tcp = T_logged @ it``; the writer applies its inverse, the loader applies it.
        """
        if self.cartesian_link is None:
            raise ValueError(f"dataset {self.name!r} logs no cartesian_position")
        return _link_to_tcp(self.robot, self.cartesian_link).copy()

    @property
    def height(self) -> int:
        """Height of ``image_key``'s frames in the published dataset."""
        return self.image_shape[0]

    @property
    def width(self) -> int:
        """Width of ``image_key``'s frames in the published dataset."""
        return self.image_shape[1]


@functools.cache
def _link_to_tcp(robot: str, link: str) -> np.ndarray:
    from kinematics import load_robot

    return load_robot(robot, geometry=False).link_to_tcp(link)


_FEATURES = {
    "fractal20220817_data": rt1_features,
    "droid": droid_features,
    "droid_100": droid_features,
}

RT1 = DatasetSchema(
    key="rt1",
    name="fractal20220817_data",
    version="0.1.0",
    robot="google_robot",
    fps=3.0,
    image_key="image",
    image_shape=(256, 320, 3),
    action_mode="ee_delta",
    action_dim=7,
)
DROID = DatasetSchema(
    key="droid",
    name="droid",
    version="1.0.1",
    robot="franka_panda",
    fps=15.0,
    image_key="exterior_image_1_left",
    image_shape=(180, 320, 3),
    action_mode="joint_pos",
    action_dim=8,
    cartesian_link="panda_link8",
)
# droid_100 is the public 100-episode sample of DROID with the same features.
DROID_100 = DatasetSchema(**{**DROID.__dict__, "key": "droid_100", "name": "droid_100"})

SCHEMAS: dict[str, DatasetSchema] = {s.key: s for s in (RT1, DROID, DROID_100)}
SCHEMAS_BY_NAME: dict[str, DatasetSchema] = {s.name: s for s in SCHEMAS.values()}


def get_schema(key_or_name: str) -> DatasetSchema:
    """Look up a schema by its short key (``rt1``, ``droid``) or its TFDS name."""
    if key_or_name in SCHEMAS:
        return SCHEMAS[key_or_name]
    if key_or_name in SCHEMAS_BY_NAME:
        return SCHEMAS_BY_NAME[key_or_name]
    choices = sorted(set(SCHEMAS) | set(SCHEMAS_BY_NAME))
    raise KeyError(
        f"unknown dataset schema {key_or_name!r}; known: {choices}.{did_you_mean(key_or_name, choices)}"
    )


def flat_feature_specs(features: F.FeaturesDict) -> dict[str, tuple[tuple[int | None, ...], str]]:
    """``{"steps/observation/image": (shape, dtype name), ...}`` for every leaf feature.

    Shapes are per step for features inside ``steps`` (the nested Dataset adds a leading None).
    The keys are the tf.train.Example feature keys a record must contain.
    """
    out: dict[str, tuple[tuple[int | None, ...], str]] = {}

    def walk(feature: Any, prefix: str) -> None:
        if isinstance(feature, F.Dataset):
            walk(feature.feature, prefix)
        elif isinstance(feature, F.FeaturesDict):
            for name, sub in feature.items():
                walk(sub, f"{prefix}/{name}" if prefix else name)
        else:
            out[prefix] = (tuple(feature.shape), np.dtype(feature.np_dtype).name)

    walk(features, "")
    return out
