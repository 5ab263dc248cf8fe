"""A tabletop scene in pybullet (DIRECT, one client per scene): robot, table, cans, blocks, drawers.

Everything is primitive geometry and kinematic: nothing is simulated, bodies are placed with
``reset*`` calls, so a scene is cheap to re-randomise and frames are exactly reproducible. The robot
is loaded from ``robot.urdf_path`` and rendered with ``getCameraImage`` through
``PinholeCamera.pybullet_view_projection``, so rendered frames and skeleton projections of the same
camera agree pixel for pixel. The segmentation buffer gives per-frame masks of the gripper links
and of the manipulated object (a can, a block, or a drawer).

``SceneSpec`` is the randomised description of one scene (object kinds, colours, poses, drawer
openings, light, camera placements). It is plain data (``to_dict``/``from_dict``), stored in the
ground truth so a scripted policy can redo an episode exactly.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pybullet as pb

from kinematics import PinholeCamera
from kinematics.transforms import matrix_to_rpy, xyz_rpy_to_matrix
from vap_env.config import from_dict, to_dict

# Colour names used in instructions -> RGB in 0..1 (saturated enough to tell apart on any table).
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (1.0, 0.5, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}
DRAWER_NAMES = ("top", "middle", "bottom")
# Object sizes: a soda can (RT-1's most common object) and a 5 cm block.
CAN_RADIUS, CAN_HEIGHT = 0.033, 0.122
BLOCK_HALF = 0.025
MAX_OBJECTS = 4  # per kind (cans, blocks) in one scene


@dataclass(frozen=True)
class TableLayout:
    """Where things go for one robot (base frame, metres)."""

    table_top_z: float  # height of the table surface
    table_center: tuple[float, float]  # x, y of the table centre
    table_half: tuple[float, float]  # half extents x, y
    object_x: tuple[float, float]  # range of object centres
    object_y: tuple[float, float]
    cabinet_x: tuple[float, float]  # range of the cabinet centre
    cabinet_abs_y: tuple[float, float]  # |y| range of the cabinet centre
    cabinet_sides: tuple[float, ...]  # signs of y the cabinet may stand on (chosen at random)
    place_drawers: tuple[int, ...]  # drawers (0 = top) the arm can place into from above
    max_opening_m: float  # gripper opening at gripper value 0 (for the closing amount on a grasp)
    grasp_offset_m: float  # where the *rendered* fingers close, along the tool z axis from the TCP
    hover_m: float  # height above a grasp point for approach waypoints
    cameras: tuple[str, ...]  # camera names rendered for this robot's dataset
    room: bool  # walls on every side (side-looking cameras), else only the far wall
    camera_jitter_m: float  # std of the camera position jitter
    camera_jitter_deg: float  # std of the camera orientation jitter


LAYOUTS: dict[str, TableLayout] = {
    # The Google robot stands at a counter; the head camera (RT-1's only camera) looks down at it.
    # The counter height (0.75 m in the base frame) keeps every grasp inside the arm's reach with the
    # home (19 degree tilted) tool orientation.
    "google_robot": TableLayout(
        table_top_z=0.75,
        table_center=(0.68, 0.0),
        table_half=(0.36, 0.65),
        object_x=(0.42, 0.64),
        object_y=(-0.24, 0.24),
        cabinet_x=(0.66, 0.72),
        cabinet_abs_y=(0.28, 0.34),
        # On the arm's side: reaching across to the left swings the fat arm links in front of the head.
        cabinet_sides=(-1.0,),
        place_drawers=(1, 2),  # above the top drawer is out of reach with a can in hand
        max_opening_m=0.1,
        grasp_offset_m=0.0,
        hover_m=0.1,
        cameras=("image",),
        room=False,
        camera_jitter_m=0.004,
        camera_jitter_deg=0.4,
    ),
    # The Franka is mounted at table height, as in DROID; two exterior cameras and a wrist camera.
    "franka_panda": TableLayout(
        table_top_z=0.0,
        table_center=(0.6, 0.0),
        table_half=(0.42, 0.7),
        object_x=(0.38, 0.62),
        object_y=(-0.22, 0.22),
        cabinet_x=(0.55, 0.65),
        cabinet_abs_y=(0.3, 0.38),
        cabinet_sides=(-1.0, 1.0),
        place_drawers=(0, 1),
        max_opening_m=0.085,
        # The spec's TCP sits between Robotiq 2F-85 pads (hand + 0.15 m) but the URDF renders the
        # shorter Franka fingers: grasp a bit behind the TCP so objects sit between rendered fingers.
        grasp_offset_m=-0.03,
        hover_m=0.12,
        cameras=("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"),
        room=True,
        camera_jitter_m=0.01,
        camera_jitter_deg=1.0,
    ),
}

# Cabinet geometry (metres): three stacked drawers facing the robot.
CAB_WIDTH, CAB_DEPTH, DRAWER_H, PANEL = 0.24, 0.22, 0.07, 0.012
CAB_HEIGHT = 3 * DRAWER_H + 2 * PANEL
DRAWER_TRAVEL = 0.15  # maximal opening of a drawer
HANDLE_OUT = 0.035  # handle bar distance in front of the drawer face


@dataclass(frozen=True)
class ObjectSpec:
    """A can (cylinder) or block (cube) standing on the table."""

    name: str  # "blue can"
    kind: str  # "can" | "block"
    colour: str  # a PALETTE key
    rgb: tuple[float, float, float]  # jittered colour actually rendered
    position: tuple[float, float, float]  # centre, base frame
    yaw: float


@dataclass(frozen=True)
class CabinetSpec:
    """A three-drawer cabinet on the table; ``yaw`` points its front towards the robot."""

    position: tuple[float, float]  # centre of the footprint (x, y)
    yaw: float  # rotation about z; the drawers open along the cabinet's -x axis
    openings: tuple[float, float, float]  # opening of the top/middle/bottom drawer (m)
    rgb: tuple[float, float, float]
    handle_rgb: tuple[float, float, float]


@dataclass(frozen=True)
class CameraPlacement:
    """One rendered camera: intrinsics and pose (``xyz_rpy`` in the base frame, or of ``link``)."""

    name: str  # the dataset's image feature name
    K: tuple[tuple[float, float, float], ...]  # (3, 3) at width x height
    width: int
    height: int
    xyz_rpy: tuple[float, ...]  # pose of the OpenCV optical frame (DROID convention)
    link: str = ""  # "" = base frame; else the pose is relative to this robot link (wrist camera)


@dataclass(frozen=True)
class SceneSpec:
    """One randomised scene. ``to_dict``/``from_dict`` round-trip it through JSON."""

    robot: str
    objects: tuple[ObjectSpec, ...]
    cabinet: CabinetSpec
    cameras: tuple[CameraPlacement, ...]
    table_rgb: tuple[float, float, float]
    floor_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    light_direction: tuple[float, float, float]
    light_ambient: float
    light_diffuse: float
    start_q: tuple[float, ...] = ()  # initial arm joints (empty = robot home)
    task: dict[str, Any] = field(default_factory=dict)  # filled by the scripted skill

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly types."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Inverse of ``to_dict``."""
        return from_dict(cls, data)

    def object(self, name: str) -> ObjectSpec:
        """The object called ``name`` (KeyError listing the scene's objects otherwise)."""
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(
            f"no object {name!r} in this scene; objects: {[o.name for o in self.objects]}"
        )

    def camera(self, name: str) -> CameraPlacement:
        """The camera placement called ``name``."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(
            f"no camera {name!r} in this scene; cameras: {[c.name for c in self.cameras]}"
        )


def _jitter_rgb(
    rng: np.random.Generator, rgb: tuple[float, ...], amount: float
) -> tuple[float, ...]:
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0.0, 1.0)) for c in rgb)


def _jittered(
    cam: PinholeCamera, rng: np.random.Generator, std_m: float, std_deg: float
) -> np.ndarray:
    """xyz_rpy of ``cam`` moved by a small random rigid motion (the camera mount is never exact)."""
    pose = np.array(cam.world_from_camera)
    rot_noise = xyz_rpy_to_matrix(np.zeros(3), np.radians(rng.normal(0.0, std_deg, 3)))
    pose[:3, :3] = pose[:3, :3] @ rot_noise[:3, :3]
    pose[:3, 3] += rng.normal(0.0, std_m, 3)
    return np.concatenate([pose[:3, 3], matrix_to_rpy(pose[:3, :3])])


def _exterior_2(cam: PinholeCamera, table_z: float) -> PinholeCamera:
    """The second exterior camera: the first one mirrored across the robot's xz plane."""
    pose = np.asarray(cam.world_from_camera)
    eye = pose[:3, 3]
    axis = pose[:3, 2]
    # Look at the point where the optical axis meets the table (or 1 m ahead if it never does).
    s = (table_z - eye[2]) / axis[2] if axis[2] < -1e-3 else 1.0
    target = eye + s * axis
    mirror = np.array([1.0, -1.0, 1.0])
    return PinholeCamera.look_at(eye * mirror, target * mirror, cam.K, cam.width, cam.height)


def default_cameras(robot: Any, width: int, height: int) -> dict[str, PinholeCamera]:
    """The un-jittered cameras of a robot's dataset layout, keyed by image feature name."""
    layout = LAYOUTS[robot.name]
    main = robot.default_camera(width, height)
    cams = {layout.cameras[0]: main}
    if "exterior_image_2_left" in layout.cameras:
        cams["exterior_image_2_left"] = _exterior_2(main, layout.table_top_z)
    return cams


def _wrist_xyz_rpy(tilt: float = 0.25, back: float = 0.09) -> tuple[float, ...]:
    """The wrist camera (DROID) in the hand frame: beside the hand, looking along the tool axis.

    It sits ``back`` metres off the hand along -x, its optical axis tilted by ``tilt`` rad towards
    the fingers, image "down" towards the tool axis, so the fingers show at the bottom of the image.
    """
    c, s = math.cos(tilt), math.sin(tilt)
    rot = np.array([[0.0, c, s], [-1.0, 0.0, 0.0], [0.0, -s, c]])
    return (-back, 0.0, 0.0, *(float(v) for v in matrix_to_rpy(rot)))


WRIST_XYZ_RPY = _wrist_xyz_rpy()


def sample_scene(
    robot: Any,
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    num_objects: tuple[int, int] = (2, MAX_OBJECTS),
    jitter_camera: bool = True,
) -> SceneSpec:
    """Draw a random scene for ``robot`` (a ``kinematics`` RobotModel) rendered at ``width`` x ``height``."""
    layout = LAYOUTS[robot.name]
    side = float(layout.cabinet_sides[int(rng.integers(0, len(layout.cabinet_sides)))])
    cab_xy = (
        float(rng.uniform(*layout.cabinet_x)),
        float(side * rng.uniform(*layout.cabinet_abs_y)),
    )
    # Face the robot base (drawers open along the cabinet's -x), with a little yaw noise.
    cab_yaw = math.atan2(cab_xy[1], cab_xy[0]) + float(rng.normal(0.0, math.radians(4)))
    cabinet = CabinetSpec(
        position=cab_xy,
        yaw=cab_yaw,
        openings=(0.0, 0.0, 0.0),
        rgb=_jitter_rgb(rng, (0.55, 0.42, 0.3), 0.12),  # type: ignore[arg-type]
        handle_rgb=_jitter_rgb(rng, (0.75, 0.75, 0.78), 0.1),  # type: ignore[arg-type]
    )
    n = int(rng.integers(num_objects[0], num_objects[1] + 1))
    pairs = [(c, k) for c in PALETTE for k in ("can", "block")]
    order = rng.permutation(len(pairs))
    objects: list[ObjectSpec] = []
    placed: list[np.ndarray] = []
    cab_center = np.array(cab_xy)
    for idx in order:
        if len(objects) == n:
            break
        colour, kind = pairs[idx]
        if any(o.colour == colour for o in objects):
            continue  # one object per colour keeps every instruction unambiguous
        for _ in range(50):
            xy = np.array([rng.uniform(*layout.object_x), rng.uniform(*layout.object_y)])
            clear_cab = np.linalg.norm(xy - cab_center) > 0.24
            clear_obj = all(np.linalg.norm(xy - q) > 0.13 for q in placed)
            if clear_cab and clear_obj:
                break
        else:
            continue
        placed.append(xy)
        half_h = CAN_HEIGHT / 2 if kind == "can" else BLOCK_HALF
        objects.append(
            ObjectSpec(
                name=f"{colour} {kind}",
                kind=kind,
                colour=colour,
                rgb=_jitter_rgb(rng, PALETTE[colour], 0.06),  # type: ignore[arg-type]
                position=(float(xy[0]), float(xy[1]), layout.table_top_z + half_h),
                yaw=float(rng.uniform(-math.pi / 4, math.pi / 4)),
            )
        )
    cams = default_cameras(robot, width, height)
    placements = []
    for name, cam in cams.items():
        xyz_rpy = (
            _jittered(cam, rng, layout.camera_jitter_m, layout.camera_jitter_deg)
            if jitter_camera
            else cam.xyz_rpy
        )
        placements.append(
            CameraPlacement(
                name=name,
                K=tuple(tuple(float(v) for v in row) for row in cam.K),  # type: ignore[misc]
                width=width,
                height=height,
                xyz_rpy=tuple(float(v) for v in xyz_rpy),
            )
        )
    if "wrist_image_left" in layout.cameras:
        main = cams[layout.cameras[0]]
        placements.append(
            CameraPlacement(
                name="wrist_image_left",
                K=tuple(tuple(float(v) for v in row) for row in main.K),  # type: ignore[misc]
                width=width,
                height=height,
                xyz_rpy=WRIST_XYZ_RPY,
                link=robot.spec.ee.link,
            )
        )
    light = rng.normal(0.0, 1.0, 3) * np.array([1.0, 1.0, 0.3]) + np.array([0.0, 0.0, 1.5])
    return SceneSpec(
        robot=robot.name,
        objects=tuple(objects),
        cabinet=cabinet,
        cameras=tuple(placements),
        table_rgb=_jitter_rgb(rng, (0.62, 0.5, 0.36), 0.15),  # type: ignore[arg-type]
        floor_rgb=_jitter_rgb(rng, (0.45, 0.45, 0.47), 0.15),  # type: ignore[arg-type]
        wall_rgb=_jitter_rgb(rng, (0.82, 0.8, 0.76), 0.12),  # type: ignore[arg-type]
        light_direction=tuple(float(v) for v in light / np.linalg.norm(light)),  # type: ignore[arg-type]
        light_ambient=float(rng.uniform(0.5, 0.7)),
        light_diffuse=float(rng.uniform(0.35, 0.55)),
        start_q=tuple(float(v) for v in robot.home_q),
    )


def _yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


class Scene:
    """A pybullet DIRECT world holding one robot and the bodies of a ``SceneSpec``.

    Args:
        robot: a ``kinematics`` RobotModel (``load_robot(name)``); its URDF is loaded into this
            scene's own client, so the robot model's IK client is left untouched.
    """

    def __init__(self, robot: Any) -> None:
        if robot.name not in LAYOUTS:
            raise KeyError(f"no table layout for robot {robot.name!r}; known: {sorted(LAYOUTS)}")
        self.robot = robot
        self.layout = LAYOUTS[robot.name]
        self.client = pb.connect(pb.DIRECT)
        c = self.client
        self.robot_id = pb.loadURDF(
            str(robot.urdf_path),
            useFixedBase=True,
            flags=pb.URDF_USE_MATERIAL_COLORS_FROM_MTL,
            physicsClientId=c,
        )
        self._joint_index: dict[str, int] = {}
        self._link_index: dict[str, int] = {}
        parents: dict[int, int] = {}
        for j in range(pb.getNumJoints(self.robot_id, physicsClientId=c)):
            info = pb.getJointInfo(self.robot_id, j, physicsClientId=c)
            self._joint_index[info[1].decode()] = j
            self._link_index[info[12].decode()] = j
            parents[j] = info[16]
        self._arm = [self._joint_index[n] for n in robot.joint_names]
        spec = robot.spec
        self._grip = [(self._joint_index[n], lo, hi) for n, (lo, hi) in spec.gripper_joints.items()]
        for name, value in spec.fixed_joints.items():
            pb.resetJointState(self.robot_id, self._joint_index[name], value, physicsClientId=c)
        # Gripper links: the parent link of the finger joints (the hand) and everything below it.
        finger_joints = [j for j, _, _ in self._grip]
        hand = (
            parents[finger_joints[0]] if finger_joints else self._link_index.get(spec.ee.link, -1)
        )
        self.gripper_links = {hand} | {j for j in parents if self._descends(j, hand, parents)}
        lay = self.layout
        self._table = self._box(
            (lay.table_half[0], lay.table_half[1], 0.02),
            (lay.table_center[0], lay.table_center[1], lay.table_top_z - 0.02),
        )
        floor_z = min(lay.table_top_z - 0.9, -0.01)
        x0 = -3.0 if lay.room else -1.0
        self._floor = self._tiles(
            (x0, 3.0), (-2.0, 2.0), lambda a, b: (a, b, floor_z - 0.01), (0, 1), 0.01
        )
        # Walls around the table, so no view looks into the renderer's empty background; a forward
        # looking head camera only needs the far one (fewer bodies render faster).
        far_x = lay.table_center[0] + lay.table_half[0] + 0.6
        walls = [(far_x, None)] + ([(-3.0, None), (None, -2.0), (None, 2.0)] if lay.room else [])
        self._wall: list[int] = []
        for x, y in walls:
            if y is None:
                self._wall += self._tiles(
                    (-2.0, 2.0),
                    (floor_z, floor_z + 4.0),
                    lambda a, b, x=x: (x, a, b),
                    (1, 2),
                    0.02,
                    2.0,
                )
            else:
                self._wall += self._tiles(
                    (-3.0, 3.0),
                    (floor_z, floor_z + 4.0),
                    lambda a, b, y=y: (a, y, b),
                    (0, 2),
                    0.02,
                    2.0,
                )
        self._cabinet = self._make_cabinet()
        # A fixed pool of object bodies, moved and recoloured by ``reset``: re-creating bodies would
        # change their ids and so TinyRenderer's draw order, and with it a few pixels of the image.
        self._pool = {
            "can": [
                self._body(pb.GEOM_CYLINDER, radius=CAN_RADIUS, length=CAN_HEIGHT)
                for _ in range(MAX_OBJECTS)
            ],
            "block": [
                self._body(pb.GEOM_BOX, halfExtents=(BLOCK_HALF,) * 3) for _ in range(MAX_OBJECTS)
            ],
        }
        self._objects: dict[str, int] = {}
        self.spec: SceneSpec | None = None

    @staticmethod
    def _descends(j: int, ancestor: int, parents: dict[int, int]) -> bool:
        while j != -1:
            j = parents[j]
            if j == ancestor:
                return True
        return False

    def _body(self, shape: int, **kwargs: Any) -> int:
        vis = pb.createVisualShape(shape, physicsClientId=self.client, **kwargs)
        return pb.createMultiBody(
            0, -1, vis, basePosition=(0.0, 0.0, -50.0), physicsClientId=self.client
        )

    def _box(self, half: tuple[float, float, float], pos: tuple[float, float, float]) -> int:
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        return pb.createMultiBody(0, -1, vis, basePosition=pos, physicsClientId=self.client)

    def _tiles(
        self,
        range_a: tuple[float, float],
        range_b: tuple[float, float],
        place: Any,
        axes: tuple[int, int],
        thickness: float,
        tile: float = 1.0,
    ) -> list[int]:
        """Bodies of ``tile``-sized boxes covering range_a x range_b on the given two axes.

        One body per tile: TinyRenderer drops a triangle with a vertex behind the camera, so a single
        huge quad vanishes from side views, and a visual shape array draws only its first few shapes.
        """
        na = math.ceil((range_a[1] - range_a[0]) / tile)
        nb = math.ceil((range_b[1] - range_b[0]) / tile)
        half = [thickness] * 3
        half[axes[0]] = half[axes[1]] = tile / 2
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=self.client)
        return [
            pb.createMultiBody(
                0,
                -1,
                vis,
                basePosition=place(range_a[0] + (i + 0.5) * tile, range_b[0] + (j + 0.5) * tile),
                physicsClientId=self.client,
            )
            for i in range(na)
            for j in range(nb)
        ]

    def _make_cabinet(self) -> int:
        """Shell as the base, one prismatic link per drawer (front, tray and handle in one visual)."""
        c = self.client
        w, d, h, t = CAB_WIDTH / 2, CAB_DEPTH / 2, CAB_HEIGHT, PANEL / 2
        shell = [
            ((t, w, h / 2), (d - t, 0, h / 2)),  # back
            ((d, t, h / 2), (0, w - t, h / 2)),  # sides
            ((d, t, h / 2), (0, -w + t, h / 2)),
            ((d, w, t), (0, 0, h - t)),  # top
            ((d, w, t), (0, 0, t)),  # bottom
        ]
        base_vis = pb.createVisualShapeArray(
            shapeTypes=[pb.GEOM_BOX] * len(shell),
            halfExtents=[s[0] for s in shell],
            visualFramePositions=[s[1] for s in shell],
            physicsClientId=c,
        )
        iw, idp = w - 2 * t, d - 2 * t  # inner half width / depth of a drawer tray
        tray_h = DRAWER_H / 2 - 0.008
        drawer = [
            ((t, w - t, DRAWER_H / 2 - 0.003), (-d + t, 0, 0)),  # front panel
            ((idp, iw, 0.004), (0, 0, -tray_h)),  # tray bottom
            ((idp, 0.004, tray_h), (0, iw, 0)),  # tray sides
            ((idp, 0.004, tray_h), (0, -iw, 0)),
            ((0.004, iw, tray_h), (idp, 0, 0)),  # tray back
            ((0.008, 0.06, 0.008), (-d - HANDLE_OUT, 0, 0)),  # handle bar
            ((0.018, 0.006, 0.006), (-d - HANDLE_OUT / 2, 0.05, 0)),  # handle posts
            ((0.018, 0.006, 0.006), (-d - HANDLE_OUT / 2, -0.05, 0)),
        ]
        vis = [
            pb.createVisualShapeArray(
                shapeTypes=[pb.GEOM_BOX] * len(drawer),
                halfExtents=[s[0] for s in drawer],
                visualFramePositions=[s[1] for s in drawer],
                physicsClientId=c,
            )
            for _ in DRAWER_NAMES
        ]
        n = len(DRAWER_NAMES)
        return pb.createMultiBody(
            0,
            -1,
            base_vis,
            linkMasses=[0] * n,
            linkCollisionShapeIndices=[-1] * n,
            linkVisualShapeIndices=vis,
            linkPositions=[(0, 0, self.drawer_center_z(i)) for i in range(n)],
            linkOrientations=[(0, 0, 0, 1)] * n,
            linkInertialFramePositions=[(0, 0, 0)] * n,
            linkInertialFrameOrientations=[(0, 0, 0, 1)] * n,
            linkParentIndices=[0] * n,
            linkJointTypes=[pb.JOINT_PRISMATIC] * n,
            linkJointAxis=[(-1, 0, 0)] * n,
            physicsClientId=c,
        )

    @staticmethod
    def drawer_center_z(i: int) -> float:
        """Height of drawer ``i`` (0 = top) centre above the cabinet's footprint."""
        return CAB_HEIGHT - PANEL - DRAWER_H * (i + 0.5)

    # ------------------------------------------------------------------ state
    def reset(self, spec: SceneSpec) -> None:
        """Place and colour every body as ``spec`` says (objects are re-created)."""
        if spec.robot != self.robot.name:
            raise ValueError(
                f"scene spec is for robot {spec.robot!r}, this scene holds {self.robot.name!r}"
            )
        c = self.client
        for bodies in self._pool.values():  # park every pooled object out of sight
            for body in bodies:
                pb.resetBasePositionAndOrientation(
                    body, (0.0, 0.0, -50.0), (0, 0, 0, 1), physicsClientId=c
                )
        self._objects = {}
        colours = [(self._table, spec.table_rgb)]
        colours += [(b, spec.floor_rgb) for b in self._floor] + [
            (b, spec.wall_rgb) for b in self._wall
        ]
        for body, rgb in colours:
            pb.changeVisualShape(body, -1, rgbaColor=(*rgb, 1.0), physicsClientId=c)
        cab = spec.cabinet
        pb.resetBasePositionAndOrientation(
            self._cabinet,
            (cab.position[0], cab.position[1], self.layout.table_top_z),
            _yaw_quat(cab.yaw),
            physicsClientId=c,
        )
        pb.changeVisualShape(self._cabinet, -1, rgbaColor=(*cab.rgb, 1.0), physicsClientId=c)
        for i, opening in enumerate(cab.openings):
            pb.changeVisualShape(self._cabinet, i, rgbaColor=(*cab.rgb, 1.0), physicsClientId=c)
            self.set_drawer(i, opening)
        used = {"can": 0, "block": 0}
        for obj in spec.objects:
            pool = self._pool[obj.kind]
            if used[obj.kind] == len(pool):
                raise ValueError(
                    f"scene spec has more than {len(pool)} {obj.kind}s; the scene holds {len(pool)}"
                )
            body = pool[used[obj.kind]]
            used[obj.kind] += 1
            pb.changeVisualShape(body, -1, rgbaColor=(*obj.rgb, 1.0), physicsClientId=c)
            pb.resetBasePositionAndOrientation(
                body, obj.position, _yaw_quat(obj.yaw), physicsClientId=c
            )
            self._objects[obj.name] = body
        self.spec = spec
        self.set_robot(np.asarray(spec.start_q or self.robot.home_q), 0.0)

    def set_robot(self, q: np.ndarray, gripper: float) -> None:
        """Arm joints q: (J,), gripper in [0, 1] (0 open) mapped linearly onto the finger joints."""
        c = self.client
        for j, v in zip(self._arm, np.asarray(q, dtype=np.float64), strict=True):
            pb.resetJointState(self.robot_id, j, float(v), physicsClientId=c)
        g = float(np.clip(gripper, 0.0, 1.0))
        for j, lo, hi in self._grip:
            pb.resetJointState(self.robot_id, j, lo + g * (hi - lo), physicsClientId=c)

    def set_object_pose(self, name: str, position: np.ndarray, quat: np.ndarray) -> None:
        """Move object ``name`` (position (3,), quat (4,) xyzw, base frame)."""
        pb.resetBasePositionAndOrientation(
            self._objects[name],
            [float(v) for v in position],
            [float(v) for v in quat],
            physicsClientId=self.client,
        )

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quat (4,)) of object ``name``."""
        pos, quat = pb.getBasePositionAndOrientation(
            self._objects[name], physicsClientId=self.client
        )
        return np.array(pos), np.array(quat)

    def set_drawer(self, index: int, opening: float) -> None:
        """Open drawer ``index`` (0 = top) by ``opening`` metres (clipped to the travel)."""
        pb.resetJointState(
            self._cabinet,
            index,
            float(np.clip(opening, 0.0, DRAWER_TRAVEL)),
            physicsClientId=self.client,
        )

    def drawer_opening(self, index: int) -> float:
        """How far drawer ``index`` (its prismatic joint in the cabinet) is pulled out, in metres."""
        return float(pb.getJointState(self._cabinet, index, physicsClientId=self.client)[0])

    def cabinet_frame(self) -> np.ndarray:
        """(4, 4) pose of the cabinet footprint centre (x forward into the cabinet, -x = pull)."""
        assert self.spec is not None
        cab = self.spec.cabinet
        return xyz_rpy_to_matrix(
            np.array([cab.position[0], cab.position[1], self.layout.table_top_z]),
            np.array([0.0, 0.0, cab.yaw]),
        )

    def handle_position(self, index: int, opening: float | None = None) -> np.ndarray:
        """Base-frame centre of drawer ``index``'s handle bar at ``opening`` (default: the current one)."""
        opening = self.drawer_opening(index) if opening is None else opening
        local = np.array(
            [-CAB_DEPTH / 2 - HANDLE_OUT - opening, 0.0, self.drawer_center_z(index), 1.0]
        )
        return (self.cabinet_frame() @ local)[:3]

    def drawer_floor(
        self, index: int, opening: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(centre of the tray floor (3,), half extents of the tray interior (2,)) in the base frame."""
        opening = self.drawer_opening(index) if opening is None else opening
        floor_z = self.drawer_center_z(index) - DRAWER_H / 2 + 0.012
        local = np.array([-opening, 0.0, floor_z, 1.0])
        half = np.array([CAB_DEPTH / 2 - PANEL - 0.01, CAB_WIDTH / 2 - PANEL - 0.01])
        return (self.cabinet_frame() @ local)[:3], half

    def link_pose(self, link: str) -> np.ndarray:
        """(4, 4) base-frame pose of a robot link."""
        st = pb.getLinkState(
            self.robot_id,
            self._link_index[link],
            computeForwardKinematics=True,
            physicsClientId=self.client,
        )
        m = np.eye(4)
        m[:3, :3] = np.array(pb.getMatrixFromQuaternion(st[5])).reshape(3, 3)
        m[:3, 3] = st[4]
        return m

    # ------------------------------------------------------------------ rendering
    def camera(self, name: str) -> PinholeCamera:
        """The ``PinholeCamera`` of placement ``name`` at the robot's current state."""
        assert self.spec is not None
        placement = self.spec.camera(name)
        pose = xyz_rpy_to_matrix(np.array(placement.xyz_rpy[:3]), np.array(placement.xyz_rpy[3:]))
        if placement.link:
            pose = self.link_pose(placement.link) @ pose
        return PinholeCamera(np.array(placement.K), pose, placement.width, placement.height)

    def render(self, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (H, W, 3) uint8, seg (H, W) int32) through ``camera`` (TinyRenderer, no shadows)."""
        assert self.spec is not None
        view, proj = camera.pybullet_view_projection(near=0.02, far=8.0)
        _, _, rgba, _, seg = pb.getCameraImage(
            camera.width,
            camera.height,
            view,
            proj,
            renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_SEGMENTATION_MASK_OBJECT_AND_LINKINDEX,
            lightDirection=self.spec.light_direction,
            lightAmbientCoeff=self.spec.light_ambient,
            lightDiffuseCoeff=self.spec.light_diffuse,
            lightSpecularCoeff=0.1,
            shadow=0,
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(camera.height, camera.width, 4)[..., :3]
        return np.ascontiguousarray(rgb), np.asarray(seg, dtype=np.int32).reshape(
            camera.height, camera.width
        )

    def gripper_mask(self, seg: np.ndarray) -> np.ndarray:
        """(H, W) bool: pixels of the gripper links (hand and fingers).

        ``seg``: (H, W) int, pybullet's segmentation buffer with link indices.
        """
        body = seg & ((1 << 24) - 1)
        link = (seg >> 24) - 1
        return (body == self.robot_id) & np.isin(link, list(self.gripper_links)) & (seg >= 0)

    def object_mask(self, seg: np.ndarray, target: str) -> np.ndarray:
        """(H, W) bool: pixels of ``target``: an object name or ``"<top|middle|bottom> drawer"``.

        ``seg``: (H, W) int, pybullet's segmentation buffer with link indices.
        """
        body = seg & ((1 << 24) - 1)
        if target.endswith(" drawer"):
            link = (seg >> 24) - 1
            return (
                (seg >= 0)
                & (body == self._cabinet)
                & (link == DRAWER_NAMES.index(target.split()[0]))
            )
        return (seg >= 0) & (body == self._objects[target])

    def close(self) -> None:
        """Disconnect the pybullet client (idempotent)."""
        if self.client >= 0:
            try:
                pb.disconnect(self.client)
            except pb.error:
                pass
            self.client = -1

    def __del__(self) -> None:
        # At interpreter exit pybullet's module may already be torn down (pb is None): the OS
        # frees the client anyway, and an exception here would only print noise.
        with contextlib.suppress(Exception):
            self.close()


def with_task(spec: SceneSpec, **task: Any) -> SceneSpec:
    """``spec`` with its ``task`` entries updated (SceneSpec is frozen)."""
    return replace(spec, task={**spec.task, **task})
