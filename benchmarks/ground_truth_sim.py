"""The reference side of offline policy evaluation: the synthetic scene run closed-loop, and a success
detector that reads a video.

``GroundTruthSim`` is the pybullet tabletop scene of ``vap_env.data.synth`` executing a policy's
action chunks: each chunk goes through the env's own action mode (``vap_env.actions``: the same
IK, limits and gripper convention as ``VAPEnv``), and every resulting joint state is applied to
the scene with the grasping rules of ``vap_env.data.synth.scripted.execute`` (an object is caught
when the closing grasp point is inside it, follows the hand, and drops onto a tray or the table
when the gripper opens). It renders the frames the world model is supposed to predict, and knows
the true outcome (``state_success``: the scene's own success rule).

``SuccessDetector`` judges a video, the same way for a world-model video and a ground-truth one,
so that comparing the two isolates the world model. Two inputs come from the simulator at the
start state, where both videos agree (they start from the same frame):

- the *manipulated thing* at frame 0 (the target object, or for drawer skills every pixel of the
  cabinet, whose drawers share its colour), which fits the colour prototypes of the ``sim`` mask
  source (``benchmarks.masks.SimMasks``) to segment the last frame of any video;
- the *goal region*: the pixels the manipulated thing covers when the skill's success condition
  holds, rendered by the simulator with its segmentation buffer at goal configurations (so
  occlusion is exact), minus what it covers at the start.

| skill | goal configurations (the success rules of ``vap_env.data.synth.scripted``) | success |
|---|---|---|
| pick | the object lifted 5-25 cm above its start | >= ``object_fraction`` of the object's pixels in the region |
| move_near | the object on the table within 16 cm of the reference object | same |
| place_into_drawer | the object on the drawer's tray | same |
| open_drawer | the drawer opened >= 8 cm; only pixels that show something else while it is closed | >= ``drawer_coverage`` of the region cabinet-coloured |
| close_drawer | the drawer at its start opening; only pixels that show something else at <= 2 cm | < ``drawer_coverage`` of the region cabinet-coloured |

The detector's agreement with ``state_success`` on ground-truth videos is measured by
``benchmarks.ope`` and reported with every evaluation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import cv2
import numpy as np

from benchmarks.masks import SimMasks, SimMasksConfig
from kinematics import PinholeCamera, SkeletonRenderer
from kinematics.transforms import matrix_to_quat, pose_to_matrix
from vap_env.actions import ActionLimits, make_action_mode
from vap_env.data.synth import render_as_dataset
from vap_env.data.synth.scene import DRAWER_NAMES, DRAWER_TRAVEL, SceneSpec, sample_scene
from vap_env.data.synth.scripted import (
    CLOSED_SUCCESS_M,
    LIFT_SUCCESS_M,
    NEAR_SUCCESS_M,
    OPEN_SUCCESS_M,
    SKILL_NAMES,
    _drop,
    _success,
    _try_grasp,
    setup_task,
)
from vap_env.data.synth.writer import scene_for

__all__ = [
    "DetectorConfig",
    "GoalRegion",
    "GroundTruthSim",
    "SceneStart",
    "SuccessDetector",
    "goal_region",
    "make_scene_start",
]


@dataclasses.dataclass(frozen=True)
class SceneStart:
    """One initial state shared by the world-model env and the ground-truth simulator."""

    spec: SceneSpec  # the scene with its task
    image: np.ndarray  # (H, W, 3) uint8, frame 0 as the simulator renders it
    camera: PinholeCamera  # the camera of ``image``
    q: np.ndarray  # (J,) start joints
    instruction: str
    skill: str

    def reset_options(self) -> dict[str, Any]:
        """``VAPEnv.reset(options=...)`` starting from this state."""
        return {
            "image": self.image,
            "instruction": self.instruction,
            "joints": self.q,
            "gripper": 0.0,
            "camera": self.camera,
        }


def make_scene_start(robot: str, skill: str, seed: int, width: int, height: int) -> SceneStart:
    """A random scene (deterministic in ``seed``) set up for ``skill`` and rendered at ``width`` x ``height``.

    As ``vap_env.data.synth.sample_start`` (un-jittered default camera, arm at home, no deliberate
    miss) but with the skill chosen by the caller, so an evaluation can balance its skills.
    """
    if skill not in SKILL_NAMES:
        raise KeyError(f"unknown skill {skill!r}; the synthetic scene has {list(SKILL_NAMES)}")
    scene = scene_for(robot)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0BE]))
    spec = sample_scene(scene.robot, rng, width, height, jitter_camera=False)
    spec = setup_task(scene, spec, skill, rng, fail_prob=0.0)
    scene.reset(spec)
    camera = scene.camera(spec.cameras[0].name)
    image = render_as_dataset(scene, camera)
    return SceneStart(
        spec=spec,
        image=image,
        camera=camera,
        q=np.asarray(spec.start_q, dtype=np.float64),
        instruction=spec.task["instruction"],
        skill=skill,
    )


class GroundTruthSim:
    """The synthetic scene executing action chunks (see the module docstring).

    Args:
        robot: kinematics robot name (``google_robot`` or ``franka_panda``).
        action_mode: the env's action mode (``ee_delta``, ``ee_pos``, ``joint_pos``, ``joint_delta``).
        limits: the env's action limits (``EnvConfig.action_limits``).

    The scene is this process's cached one (``scene_for``): do not interleave two simulators of
    the same robot in one process.
    """

    def __init__(self, robot: str, action_mode: str, limits: ActionLimits | None = None) -> None:
        self.scene = scene_for(robot)
        self.robot = self.scene.robot
        self.action_mode = make_action_mode(action_mode, self.robot, limits or ActionLimits())
        self.num_joints = len(self.robot.joint_names)
        self.spec: SceneSpec | None = None
        self._renderer: SkeletonRenderer | None = None

    def _render(self) -> np.ndarray:
        """The current frame (H, W, 3) uint8, made as the dataset's frames are."""
        return render_as_dataset(self.scene, self.scene.camera(self.spec.cameras[0].name))  # type: ignore[union-attr]

    def _proprio(self) -> np.ndarray:
        return np.concatenate([self.q, self.robot.ee_pose(self.q), [self.gripper]]).astype(
            np.float32
        )

    def _observation(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """``VAPEnv``'s observation keys, so a policy that reads images runs on both sides."""
        camera = self.scene.camera(self.spec.cameras[0].name)  # type: ignore[union-attr]
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (
            camera.width,
            camera.height,
        ):
            self._renderer = SkeletonRenderer(self.robot.spec, camera.width, camera.height)
        points = self.robot.keypoints(self.q[None], np.array([self.gripper]))  # (1, P, 3)
        skeleton = self._renderer.render(points, camera)[0]  # (H, W, 3), the env's full skeleton
        return {"image": image, "skeleton": skeleton, "proprio": self._proprio()}

    def reset(self, spec: SceneSpec) -> dict[str, np.ndarray]:
        """Start from ``spec`` (arm at ``spec.start_q``, gripper open); returns the observation
        ``{"image": (H, W, 3) uint8, "skeleton": (H, W, 3) uint8, "proprio": (J + 8,) float32}``
        laid out as ``VAPEnv``'s."""
        if not spec.task:
            raise ValueError("the scene spec has no task; build it with make_scene_start")
        self.scene.reset(spec)
        self.spec = spec
        self.q = np.asarray(spec.start_q or self.robot.home_q, dtype=np.float64)
        self.gripper = 0.0  # the commanded closedness, as the env's proprio reports it
        # Grasp state, named as in ``execute``.
        self.held: str | None = None
        self.held_from_tcp = np.eye(4)
        self.grasp_state: tuple[np.ndarray, float] = (np.zeros(3), 0.0)
        self.stop = 1.0
        self.in_drawer: dict[str, int] = {}
        self.start_z = {o.name: o.position[2] for o in spec.objects}
        self.pull = -self.scene.cabinet_frame()[:3, 0]
        return self._observation(self._render())

    def _apply(self, q: np.ndarray, cmd: float) -> None:
        """One frame of ``execute``'s loop: move what is held, grasp / release on the command's edges."""
        scene, offset = self.scene, self.scene.layout.grasp_offset_m
        tcp_m = pose_to_matrix(self.robot.ee_pose(q))
        point = tcp_m[:3, 3] + offset * tcp_m[:3, 2]
        if self.held is not None and self.held.startswith("drawer:"):
            p0, o0 = self.grasp_state
            scene.set_drawer(int(self.held.split(":")[1]), o0 + float((point - p0) @ self.pull))
        elif self.held is not None:
            m = tcp_m @ self.held_from_tcp
            scene.set_object_pose(self.held, m[:3, 3], matrix_to_quat(m[:3, :3]))
        if self.held is None and cmd > self.gripper + 1e-9:
            self.held, self.stop = _try_grasp(scene, self.spec, point, tcp_m, cmd)
            if self.held is not None and self.held.startswith("drawer:"):
                drawer = int(self.held.split(":")[1])
                self.grasp_state = (point.copy(), scene.drawer_opening(drawer))
            elif self.held is not None:
                pos, quat = scene.object_pose(self.held)
                self.held_from_tcp = np.linalg.inv(tcp_m) @ pose_to_matrix(
                    np.concatenate([pos, quat])
                )
        elif self.held is not None and cmd < self.gripper - 1e-9:
            if not self.held.startswith("drawer:"):
                drawer = _drop(scene, self.held)
                if drawer is not None:
                    self.in_drawer[self.held] = drawer
            self.held = None
        rendered_grip = min(cmd, self.stop) if self.held is not None else cmd
        scene.set_robot(q, rendered_grip)
        self.q, self.gripper = q, cmd

    def step(self, chunk: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Execute one action chunk (K, D) -> (frames (K, H, W, 3) uint8, observation after it)."""
        if self.spec is None:
            raise RuntimeError("call reset(spec) before step()")
        traj = self.action_mode.rollout(self.q, self.gripper, np.asarray(chunk, np.float64))
        frames = []
        for q, g in zip(traj.q, traj.gripper, strict=True):
            self._apply(np.asarray(q, np.float64), float(g))
            frames.append(self._render())
        return np.stack(frames), self._observation(frames[-1])

    def state_success(self) -> bool:
        """The scene's own success rule (``vap_env.data.synth.scripted``) at the current state."""
        if self.spec is None:
            raise RuntimeError("call reset(spec) before state_success()")
        return bool(_success(self.scene, self.spec, self.held, self.in_drawer, self.start_z))


# ---------------------------------------------------------------------------------------------
# Success detector


@dataclasses.dataclass(frozen=True)
class GoalRegion:
    """What the detector needs to know about one start state (see the module docstring)."""

    skill: str
    first_frame: np.ndarray  # (H, W, 3) uint8, frame 0 of every video of this start
    thing_mask: np.ndarray  # (H, W) bool, the manipulated thing at frame 0 (prototype source)
    region: np.ndarray  # (H, W) bool, the goal region
    rule: str  # "inside" | "covered" | "cleared"
    window: (
        np.ndarray
    )  # (H, W) bool, where "inside" counts the object's pixels (region and start, dilated)


# skill -> rule of the goal region
RULES: dict[str, str] = {
    "pick": "inside",
    "move_near": "inside",
    "place_into_drawer": "inside",
    "open_drawer": "covered",
    "close_drawer": "cleared",
}


def _cabinet_mask(scene: Any, seg: np.ndarray) -> np.ndarray:
    """(H, W) bool: every pixel of the cabinet (shell and drawers share one colour)."""
    return (seg >= 0) & ((seg & ((1 << 24) - 1)) == scene._cabinet)


def _object_goal_poses(scene: Any, spec: SceneSpec) -> list[np.ndarray]:
    """Object centre positions (3,) where the success rule of ``spec.task`` holds."""
    task = spec.task
    obj = spec.object(task["target"])
    start = np.array(obj.position)
    if task["skill"] == "pick":
        up = np.array([0.0, 0.0, 1.0])
        return [start + dz * up for dz in np.linspace(LIFT_SUCCESS_M, 0.25, 5)]
    if task["skill"] == "move_near":
        ref = np.array(spec.object(task["reference"]).position)
        poses = []
        for radius, count in ((0.06, 6), (0.11, 10), (NEAR_SUCCESS_M - 0.01, 14)):
            for a in np.linspace(0.0, 2 * math.pi, count, endpoint=False):
                poses.append(
                    np.array([*(ref[:2] + radius * np.array([math.cos(a), math.sin(a)])), start[2]])
                )
        return poses
    drawer = DRAWER_NAMES.index(task["drawer"])
    floor, half = scene.drawer_floor(drawer)
    frame = scene.cabinet_frame()[:3, :3]
    height = start[2] - scene.layout.table_top_z  # centre height above the surface it stands on
    return [
        floor + frame @ np.array([fx * half[0], fy * half[1], 0.0]) + [0.0, 0.0, height]
        for fx in (-0.6, 0.0, 0.6)
        for fy in (-0.6, 0.0, 0.6)
    ]


def goal_region(start: SceneStart) -> GoalRegion:
    """Render the goal region of ``start`` with the simulator (the scene is reset afterwards)."""
    scene, spec, task = scene_for(start.spec.robot), start.spec, start.spec.task
    camera = start.camera
    scene.reset(spec)
    _, seg0 = scene.render(camera)
    skill = task["skill"]
    if RULES[skill] == "inside":
        target = task["target"]
        thing = scene.object_mask(seg0, target)
        _, quat = scene.object_pose(target)
        region = np.zeros_like(thing)
        for pos in _object_goal_poses(scene, spec):
            scene.set_object_pose(target, pos, quat)
            region |= scene.object_mask(scene.render(camera)[1], target)
        region &= ~thing
    else:
        drawer = DRAWER_NAMES.index(task["drawer"])
        name = f"{task['drawer']} drawer"
        thing = _cabinet_mask(scene, seg0)
        opening = spec.cabinet.openings[drawer]
        if skill == "open_drawer":
            goal, other = np.linspace(OPEN_SUCCESS_M, DRAWER_TRAVEL, 3), [opening]
        else:
            goal, other = [opening], [0.0, CLOSED_SUCCESS_M]
        shows_drawer = np.zeros_like(thing)
        shows_else = np.ones_like(thing)
        for value in goal:
            scene.set_drawer(drawer, value)
            shows_drawer |= scene.object_mask(scene.render(camera)[1], name)
        for value in other:
            scene.set_drawer(drawer, value)
            shows_else &= ~_cabinet_mask(scene, scene.render(camera)[1])
        region = shows_drawer & shows_else
    scene.reset(spec)
    if not thing.any() or not region.any():
        raise ValueError(
            f"{skill!r} start (instruction {start.instruction!r}) has an empty "
            f"{'manipulated-thing mask' if not thing.any() else 'goal region'} at "
            f"{camera.width}x{camera.height}: the camera does not see it; use a larger resolution"
        )
    # Object-coloured pixels far from both the start and the goal (e.g. a grey arm link that looks
    # like a white can) say nothing about the object: "inside" only counts pixels near either.
    window = cv2.dilate((region | thing).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return GoalRegion(skill, start.image.copy(), thing, region, RULES[skill], window)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the success detector (see the module docstring for the rules)."""

    object_fraction: float = dataclasses.field(
        default=0.3, metadata={"help": "'inside': share of the object's pixels in the goal region"}
    )
    drawer_coverage: float = dataclasses.field(
        default=0.2, metadata={"help": "drawer rules: share of the region that is cabinet-coloured"}
    )
    min_pixels: int = dataclasses.field(
        default=3,
        metadata={"help": "'inside': fewer object pixels than this is 'not seen': failure"},
    )
    min_visible: float = dataclasses.field(
        default=0.3,
        metadata={
            "help": "the manipulated thing counts as seen if its pixel count is within "
            "[min_visible, 1 / min_visible] times frame 0's ('inside') or this share of the "
            "cabinet outside the region is still cabinet-coloured (drawer rules); unseen: failure"
        },
    )
    masks: SimMasksConfig = dataclasses.field(
        default_factory=SimMasksConfig, metadata={"help": "the colour-prototype segmentation"}
    )

    def __post_init__(self) -> None:
        for name in ("object_fraction", "drawer_coverage", "min_visible"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.min_pixels < 1:
            raise ValueError(f"min_pixels must be >= 1, got {self.min_pixels}")


class SuccessDetector:
    """Success of a video's last frame against a ``GoalRegion`` (module docstring)."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()
        self._masks = SimMasks(self.cfg.masks)

    def thing_mask(self, frame: np.ndarray, goal: GoalRegion) -> np.ndarray:
        """(H, W) bool: the manipulated thing in ``frame`` (H, W, 3) uint8, by colour."""
        if frame.shape != goal.first_frame.shape:
            raise ValueError(
                f"frame {frame.shape} and the goal region's first frame {goal.first_frame.shape} "
                "differ: judge videos at the resolution the goal region was rendered at"
            )
        return self._masks.masks(frame[None], goal.first_frame[None], goal.thing_mask[None])[0]

    def score(self, video: np.ndarray, goal: GoalRegion) -> float:
        """The rule's statistic on the last frame of ``video`` (T, H, W, 3) uint8 (NaN: not seen)."""
        mask = self.thing_mask(np.asarray(video)[-1], goal)
        lo = self.cfg.min_visible
        if goal.rule == "inside":
            mask &= goal.window
            n = int(mask.sum())
            # About as many object pixels as at the start, else it is not the object (noise,
            # another thing of a similar colour) or it is hidden: no evidence of success.
            seen = n / goal.thing_mask.sum()
            if n < self.cfg.min_pixels or not lo <= seen <= 1.0 / lo:
                return float("nan")
            return float((mask & goal.region).sum() / n)
        # The cabinet must still be there outside the region, or "cleared" would credit a video
        # that lost the cabinet altogether.
        rest = goal.thing_mask & ~goal.region
        if (mask & rest).sum() < lo * rest.sum():
            return float("nan")
        return float((mask & goal.region).sum() / goal.region.sum())

    def __call__(self, video: np.ndarray, goal: GoalRegion) -> tuple[bool, float]:
        """(success, score) of ``video`` (T, H, W, 3) uint8; not seen (NaN score) is a failure."""
        s = self.score(video, goal)
        if not math.isfinite(s):
            return False, s
        if goal.rule == "inside":
            return bool(s >= self.cfg.object_fraction), s
        covered = s >= self.cfg.drawer_coverage
        return bool(covered if goal.rule == "covered" else not covered), s
