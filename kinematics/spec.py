"""Keypoint specs: which points of a robot are drawn in the skeleton prompt, and how, as data.

A spec is a YAML file beside (or pointing at) a URDF. It names the controlled arm joints and their home
pose, how the gripper value (0.0 = fully open, 1.0 = fully closed) drives the finger joints, the
end-effector (TCP) frame, the default camera, and the skeleton: keypoints (a link origin or a fixed
offset in a link frame), edges between keypoints, and one fixed colour per part. Adding a robot means
writing such a file; no code changes (see ``kinematics/robots/*/*.yaml``).

Spec YAML (all lengths in metres, angles in radians, colours RGB 0..255)::

    name: my_robot
    urdf: my_robot.urdf            # relative to this file, absolute, or "pybullet_data:<path>"
    arm_joints: [j1, j2, ...]      # the controlled joints, in action order
    home: [0.0, 0.3, ...]          # one value per arm joint
    gripper_joints:                # joint -> [value when open, value when closed]; linear in between
      finger_l: [0.04, 0.0]
    fixed_joints: {head_pan: 0.0}  # other movable joints held at a value (default 0)
    ee: {name: tcp, link: hand, xyz: [0, 0, 0.1], rpy: [0, 0, 0]}   # TCP = link frame * offset
    camera: {link: cam_link, K: [[fx,0,cx],[0,fy,cy],[0,0,1]], width: 640, height: 512,
             default_width: 320, default_height: 256}     # or xyz_rpy: [x,y,z,roll,pitch,yaw]
    parts: {arm: [0, 160, 255], palm: [255, 220, 0], left_finger: [255, 0, 80], right_finger: [0, 255, 120]}
    keypoints:
      - {name: elbow, link: link_elbow, part: arm}                         # link origin
      - {name: tip_l, link: hand, part: left_finger, offset: [0, 0.05, 0.13],
         offset_closed: [0, 0.006, 0.15]}      # virtual finger: moves linearly with the gripper value
    edges:
      - [elbow, wrist, arm]                    # [keypoint a, keypoint b, part]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vap_env.config import did_you_mean, from_dict, to_dict

Vec3 = tuple[float, float, float]


def _vec3(value: Any, where: str) -> Vec3:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{where} = {value!r} is not 3 finite numbers; write it as [x, y, z]")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Keypoint:
    """One named skeleton point: the origin of ``link`` moved by ``offset`` (in the link frame)."""

    name: str = field(metadata={"help": "unique keypoint name, used by edges"})
    link: str = field(
        metadata={"help": "URDF link (or the spec's ee frame name) the point is fixed to"}
    )
    part: str = field(metadata={"help": "part (colour) of the joint dot; one of spec.parts"})
    offset: Vec3 = field(default=(0.0, 0.0, 0.0), metadata={"help": "offset in the link frame (m)"})
    offset_closed: Vec3 | None = field(
        default=None,
        metadata={
            "help": "offset when the gripper is fully closed; if set, `offset` is the open one and the "
            "point moves linearly with the gripper value (virtual fingers without a URDF)"
        },
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", _vec3(self.offset, f"keypoint {self.name!r} offset"))
        if self.offset_closed is not None:
            object.__setattr__(
                self,
                "offset_closed",
                _vec3(self.offset_closed, f"keypoint {self.name!r} offset_closed"),
            )


@dataclass(frozen=True)
class Edge:
    """A line of the skeleton between keypoints ``a`` and ``b``, drawn in the colour of ``part``."""

    a: str = field(metadata={"help": "first keypoint name"})
    b: str = field(metadata={"help": "second keypoint name"})
    part: str = field(metadata={"help": "part (colour) of the line; one of spec.parts"})


@dataclass(frozen=True)
class EEFrame:
    """The tool-centre-point frame: ``link`` frame composed with a fixed offset (xyz, fixed-axis rpy)."""

    name: str = field(
        metadata={"help": "frame name; may equal `link` when the URDF has a TCP link"}
    )
    link: str = field(metadata={"help": "URDF link the TCP is rigidly attached to"})
    xyz: Vec3 = field(default=(0.0, 0.0, 0.0), metadata={"help": "offset in the link frame (m)"})
    rpy: Vec3 = field(default=(0.0, 0.0, 0.0), metadata={"help": "fixed-axis rpy of the offset"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyz", _vec3(self.xyz, f"ee {self.name!r} xyz"))
        object.__setattr__(self, "rpy", _vec3(self.rpy, f"ee {self.name!r} rpy"))


@dataclass(frozen=True)
class CameraSpec:
    """Default camera: intrinsics at a native size, mounted on a link or fixed in the base frame."""

    K: tuple[tuple[float, ...], ...] = field(metadata={"help": "3x3 intrinsics at width x height"})
    width: int = field(metadata={"help": "native image width of K (pixels)"})
    height: int = field(metadata={"help": "native image height of K (pixels)"})
    link: str | None = field(
        default=None, metadata={"help": "camera = this link's frame (OpenCV optical axes)"}
    )
    xyz_rpy: tuple[float, ...] | None = field(
        default=None,
        metadata={"help": "camera pose in the base frame, DROID convention [x,y,z,roll,pitch,yaw]"},
    )
    default_width: int | None = field(
        default=None, metadata={"help": "size default_camera() returns (K scaled); None = native"}
    )
    default_height: int | None = field(default=None, metadata={"help": "see default_width"})

    def __post_init__(self) -> None:
        k = tuple(tuple(float(v) for v in row) for row in self.K)
        if len(k) != 3 or any(len(r) != 3 for r in k):
            raise ValueError(
                f"camera K = {self.K!r} is not 3x3; write [[fx,0,cx],[0,fy,cy],[0,0,1]]"
            )
        object.__setattr__(self, "K", k)
        if (self.link is None) == (self.xyz_rpy is None):
            raise ValueError(
                f"camera needs exactly one of `link` or `xyz_rpy` (got link={self.link!r}, "
                f"xyz_rpy={self.xyz_rpy!r})"
            )
        if self.xyz_rpy is not None and len(self.xyz_rpy) != 6:
            raise ValueError(f"camera xyz_rpy = {self.xyz_rpy!r} must have 6 numbers x,y,z,r,p,y")


def _check_colour(part: str, colour: Any) -> tuple[int, int, int]:
    ok = (
        isinstance(colour, list | tuple)
        and len(colour) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)
    )
    if not ok:
        raise ValueError(
            f"part {part!r} has colour {colour!r}; a colour is 3 integers 0..255 (RGB), e.g. [255, 0, 80]"
        )
    return (int(colour[0]), int(colour[1]), int(colour[2]))


@dataclass(frozen=True)
class KeypointSpec:
    """A robot's skeleton and control description (see the module docstring for the YAML layout)."""

    name: str = field(metadata={"help": "robot name"})
    urdf: str = field(
        metadata={"help": "URDF path: relative to the spec file, absolute, or pybullet_data:<rel>"}
    )
    arm_joints: tuple[str, ...] = field(metadata={"help": "controlled joints in action order"})
    home: tuple[float, ...] = field(metadata={"help": "home pose, one value per arm joint"})
    ee: EEFrame = field(metadata={"help": "tool-centre-point frame"})
    parts: Mapping[str, tuple[int, int, int]] = field(metadata={"help": "part name -> RGB colour"})
    keypoints: tuple[Keypoint, ...] = field(metadata={"help": "skeleton points"})
    edges: tuple[Edge, ...] = field(metadata={"help": "skeleton lines"})
    gripper_joints: Mapping[str, tuple[float, float]] = field(
        default_factory=dict, metadata={"help": "joint -> (open value, closed value)"}
    )
    fixed_joints: Mapping[str, float] = field(
        default_factory=dict, metadata={"help": "other movable joints held at these values"}
    )
    camera: CameraSpec | None = field(default=None, metadata={"help": "default camera"})
    description: str = field(default="", metadata={"help": "free text: sources, assumptions"})
    base_dir: str | None = field(
        default=None, metadata={"help": "directory relative `urdf` paths resolve against"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "arm_joints", tuple(self.arm_joints))
        home = tuple(float(v) for v in self.home)
        if len(home) != len(self.arm_joints) or not all(math.isfinite(v) for v in home):
            raise ValueError(
                f"spec {self.name!r}: home = {list(self.home)} must be {len(self.arm_joints)} finite "
                f"values, one per arm joint {list(self.arm_joints)}"
            )
        object.__setattr__(self, "home", home)
        if len(set(self.arm_joints)) != len(self.arm_joints):
            raise ValueError(
                f"spec {self.name!r}: arm_joints {list(self.arm_joints)} has duplicates"
            )
        if not isinstance(self.parts, Mapping):
            raise ValueError(
                f"spec {self.name!r}: `parts` must map part names to RGB colours "
                f"({{arm: [0, 160, 255], ...}}), got {type(self.parts).__name__} {self.parts!r}"
            )
        parts = {str(k): _check_colour(str(k), v) for k, v in dict(self.parts).items()}
        if not parts:
            raise ValueError(f"spec {self.name!r}: `parts` is empty; give each part an RGB colour")
        object.__setattr__(self, "parts", parts)
        grip: dict[str, tuple[float, float]] = {}
        for joint, values in dict(self.gripper_joints).items():
            vals = tuple(float(v) for v in values)
            if len(vals) != 2 or not all(math.isfinite(v) for v in vals):
                raise ValueError(
                    f"spec {self.name!r}: gripper_joints[{joint!r}] = {values!r}; write [open, closed]"
                )
            grip[str(joint)] = vals  # type: ignore[assignment]
        object.__setattr__(self, "gripper_joints", grip)
        object.__setattr__(
            self, "fixed_joints", {str(k): float(v) for k, v in dict(self.fixed_joints).items()}
        )
        overlap = (set(grip) | set(self.fixed_joints)) & set(self.arm_joints)
        if overlap:
            raise ValueError(
                f"spec {self.name!r}: joints {sorted(overlap)} are arm joints and also gripper/fixed "
                "joints; list each joint in one place only"
            )
        names = [k.name for k in self.keypoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec {self.name!r}: duplicate keypoint names {dupes}; rename them")
        for kp in self.keypoints:
            if kp.part not in parts:
                raise ValueError(
                    f"spec {self.name!r}: keypoint {kp.name!r} has unknown part {kp.part!r}; parts "
                    f"are {sorted(parts)}.{did_you_mean(kp.part, list(parts))}"
                )
        for e in self.edges:
            for end in (e.a, e.b):
                if end not in names:
                    raise ValueError(
                        f"spec {self.name!r}: edge [{e.a}, {e.b}] names unknown keypoint {end!r}; "
                        f"define it under `keypoints`.{did_you_mean(end, names)}"
                    )
            if e.part not in parts:
                raise ValueError(
                    f"spec {self.name!r}: edge [{e.a}, {e.b}] has unknown part {e.part!r}; parts are "
                    f"{sorted(parts)}.{did_you_mean(e.part, list(parts))}"
                )
        if not self.keypoints:
            raise ValueError(
                f"spec {self.name!r}: no keypoints; add at least one under `keypoints`"
            )

    # ------------------------------------------------------------------ derived views
    @property
    def keypoint_names(self) -> list[str]:
        """Keypoint names in the order of the ``P`` axis of every keypoint array."""
        return [k.name for k in self.keypoints]

    @property
    def num_keypoints(self) -> int:
        """``P``: the number of keypoints."""
        return len(self.keypoints)

    @property
    def edge_index(self) -> list[tuple[int, int]]:
        """Edges as (a, b) indices into the keypoint axis."""
        idx = {n: i for i, n in enumerate(self.keypoint_names)}
        return [(idx[e.a], idx[e.b]) for e in self.edges]

    def urdf_path(self) -> Path:
        """Resolve ``urdf`` to an existing file (raises FileNotFoundError naming the path and the fix)."""
        text = self.urdf
        if text.startswith("pybullet_data:"):
            import pybullet_data

            path = Path(pybullet_data.getDataPath()) / text.split(":", 1)[1]
        else:
            path = Path(text).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = Path(self.base_dir) / path
        if not path.is_file():
            raise FileNotFoundError(
                f"spec {self.name!r}: URDF {text!r} resolves to {str(path)!r}, which does not exist; "
                "give a path relative to the spec file, an absolute path, or pybullet_data:<relative path>"
            )
        return path

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base_dir: str | Path | None = None
    ) -> KeypointSpec:
        """Build a spec from the YAML mapping; edges may be ``[a, b, part]`` lists."""
        data = dict(data)
        edges = []
        for i, e in enumerate(data.get("edges", []) or []):
            if isinstance(e, list | tuple):
                if len(e) != 3:
                    raise ValueError(
                        f"edge #{i} = {e!r}; write it as [keypoint_a, keypoint_b, part]"
                    )
                e = {"a": e[0], "b": e[1], "part": e[2]}
            edges.append(e)
        data["edges"] = edges
        if base_dir is not None:
            data["base_dir"] = str(base_dir)
        return from_dict(cls, data, where=f"KeypointSpec {data.get('name', '?')!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> KeypointSpec:
        """Load a spec file; a relative ``urdf`` resolves against the file's directory."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"keypoint spec {str(path)!r} does not exist")
        # The C loader is ~10x faster; specs are parsed each time a RobotModel is built.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            data = yaml.load(path.read_text(), Loader=loader) or {}
        except yaml.YAMLError as err:  # its own message says only "<unicode string>"
            raise ValueError(f"keypoint spec {str(path)!r} is not valid YAML: {err}") from None
        if not isinstance(data, Mapping):
            raise ValueError(
                f"keypoint spec {str(path)!r} must be a YAML mapping, got {type(data)}"
            )
        try:
            return cls.from_dict(data, base_dir=path.resolve().parent)
        except (ValueError, TypeError, KeyError) as err:
            message = err.args[0] if err.args else str(err)
            if str(path) in str(message):
                raise
            # Nested checks (a camera, a keypoint) do not know the file they came from.
            try:
                named = type(err)(f"keypoint spec {str(path)!r}: {message}")
            except TypeError:  # an exception class with another signature: keep it as it is
                raise err from None
            raise named from err

    def to_dict(self) -> dict[str, Any]:
        """Plain-types serialisation (``from_dict`` inverse; ``base_dir`` omitted)."""
        plain = to_dict(self)
        plain.pop("base_dir", None)
        plain["edges"] = [[e.a, e.b, e.part] for e in self.edges]
        return plain
