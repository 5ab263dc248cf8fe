"""Scripted skills: waypoints -> IK joint trajectory -> rendered frames, masks and the outcome.

A skill is set up on a sampled ``SceneSpec`` (``setup_task``: choose the object / drawer, open a
drawer first where the skill needs it, phrase the RT-1 style instruction) and then executed by
``execute`` from the spec alone, so the stored spec (``spec.task``) is enough to redo an episode.

Execution is kinematic: the TCP follows time-stamped waypoints (smoothstep position, slerp
orientation); each frame is solved with ``robot.ik`` warm-started from the previous frame, and the
logged TCP pose is FK of the solved joints (what the frames show). Grasping is a rule, not physics:
when the gripper is closing with the grasp point (between the rendered fingers) inside an object or
around a drawer handle, that object (or drawer) follows the TCP until the gripper opens; a released
object drops onto the open drawer tray or the table below it. A grasp point that misses leaves the
object where it is, so failures happen naturally (``fail_prob`` adds deliberate misses).

Success (measured in the scene at the last frame): pick = the object is held >= 5 cm above its start;
move near = released within 16 cm (centre to centre, in xy) of the reference object; open drawer =
opening >= 8 cm; close drawer = opening <= 2 cm; place into drawer = released inside the drawer tray.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kinematics import PinholeCamera
from kinematics.transforms import matrix_to_pose, matrix_to_quat, pose_to_matrix, quat_to_matrix
from vap_env.data.synth.scene import (
    BLOCK_HALF,
    CAB_DEPTH,
    CAN_HEIGHT,
    CAN_RADIUS,
    DRAWER_NAMES,
    DRAWER_TRAVEL,
    PANEL,
    Scene,
    SceneSpec,
    with_task,
)

SKILL_NAMES: tuple[str, ...] = (
    "pick",
    "move_near",
    "open_drawer",
    "close_drawer",
    "place_into_drawer",
)

INSTRUCTIONS: dict[str, str] = {
    "pick": "pick {target}",
    "move_near": "move {target} near {reference}",
    "open_drawer": "open {drawer} drawer",
    "close_drawer": "close {drawer} drawer",
    "place_into_drawer": "place {target} into {drawer} drawer",
}

# Waypoint timing per skill: (time fraction of the episode, phase name). Positions come from
# ``_waypoints``; the phases are named so the two tables are read together.
_PICK_TIMES = {"hover": 0.35, "reach": 0.55, "close": 0.65, "lift": 1.0}
_MOVE_TIMES = {
    "hover": 0.2,
    "reach": 0.32,
    "close": 0.4,
    "lift": 0.5,
    "carry": 0.72,
    "lower": 0.82,
    "open": 0.88,
    "retreat": 1.0,
}
_DRAWER_TIMES = {
    "hover": 0.3,
    "reach": 0.45,
    "close": 0.55,
    "pull": 0.85,
    "open": 0.92,
    "retreat": 1.0,
}

OPEN_SUCCESS_M, CLOSED_SUCCESS_M, LIFT_SUCCESS_M, NEAR_SUCCESS_M = 0.08, 0.02, 0.05, 0.16


@dataclass
class Rollout:
    """One executed episode (T frames); images keyed by the dataset's camera feature names."""

    spec: SceneSpec  # with ``task`` filled in
    instruction: str
    skill: str
    success: bool
    q: np.ndarray  # (T, J) float32 arm joints
    gripper: np.ndarray  # (T,) float32 actual closedness (stops at the object's width when holding)
    gripper_command: np.ndarray  # (T,) float32 commanded closedness
    tcp_pose: np.ndarray  # (T, 7) float32, FK of q
    images: dict[str, np.ndarray]  # name -> (T, H, W, 3) uint8, the rendered cameras
    gripper_masks: np.ndarray  # (T, H, W) bool, main camera
    object_masks: np.ndarray  # (T, H, W) bool, main camera
    cameras: dict[str, PinholeCamera]  # cameras at step 0
    max_ik_error_m: float


def _rz(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def grasp_rotation(robot: Any, finger_dir_yaw: float | None, period: float) -> np.ndarray:
    """(3, 3) grasp orientation: the home tool orientation turned about world z.

    The turn makes the fingers' closing axis (tool y) point along ``finger_dir_yaw`` modulo
    ``period`` (pi/2 for a block's faces, pi for a handle), choosing the smallest turn; ``None``
    (a can) keeps the home orientation.
    """
    r_home = quat_to_matrix(robot.ee_pose(robot.home_q)[3:])
    if finger_dir_yaw is None:
        return r_home
    current = math.atan2(r_home[1, 1], r_home[0, 1])
    turn = _wrap(finger_dir_yaw - current)
    turn = (turn + period / 2) % period - period / 2
    return _rz(turn) @ r_home


def setup_task(
    scene: Scene, spec: SceneSpec, skill: str, rng: np.random.Generator, fail_prob: float
) -> SceneSpec:
    """Choose what ``skill`` acts on in ``spec`` and return the spec with ``task`` filled in.

    Drawer skills pick a drawer; close / place-into need it open, so the spec's openings change.
    With probability ``fail_prob`` the grasp point is displaced (a deliberate miss).
    """
    if skill not in SKILL_NAMES:
        raise KeyError(f"unknown scripted skill {skill!r}; known: {list(SKILL_NAMES)}")
    objects = [o.name for o in spec.objects]
    miss = rng.random() < fail_prob
    angle = rng.uniform(0, 2 * math.pi)
    offset = (0.06 * math.cos(angle), 0.06 * math.sin(angle)) if miss else (0.0, 0.0)
    task: dict[str, Any] = {"skill": skill, "grasp_offset_xy": list(offset)}
    openings = [0.0, 0.0, 0.0]
    if skill in ("pick", "move_near", "place_into_drawer"):
        if not objects or (skill == "move_near" and len(objects) < 2):
            raise ValueError(f"skill {skill!r} needs more objects than scene has: {objects}")
        order = rng.permutation(len(objects))
        task["target"] = objects[order[0]]
        if skill == "move_near":
            # The farthest other object: "near" should be a change, not the starting layout.
            here = np.array(spec.object(task["target"]).position[:2])
            task["reference"] = max(
                (o for o in objects if o != task["target"]),
                key=lambda o: float(np.linalg.norm(np.array(spec.object(o).position[:2]) - here)),
            )
    if skill in ("open_drawer", "close_drawer", "place_into_drawer"):
        choices = scene.layout.place_drawers if skill == "place_into_drawer" else (0, 1, 2)
        drawer = int(choices[int(rng.integers(0, len(choices)))])
        task["drawer"] = DRAWER_NAMES[drawer]
        if skill == "open_drawer":
            openings[drawer] = float(rng.uniform(0.0, 0.02))
        else:
            openings[drawer] = float(rng.uniform(0.8, 1.0) * DRAWER_TRAVEL)
    task["instruction"] = INSTRUCTIONS[skill].format(
        target=task.get("target", ""),
        reference=task.get("reference", ""),
        drawer=task.get("drawer", ""),
    )
    spec = replace(spec, cabinet=replace(spec.cabinet, openings=tuple(openings)))  # type: ignore[arg-type]
    return with_task(spec, **task)


def _object_grasp_point(
    spec: SceneSpec, name: str, table_z: float
) -> tuple[np.ndarray, float | None, float]:
    """(grasp point (3,), finger yaw or None, width across the fingers) of an object at rest."""
    obj = spec.object(name)
    pos = np.array(obj.position)
    if obj.kind == "can":
        return np.array([pos[0], pos[1], table_z + CAN_HEIGHT - 0.035]), None, 2 * CAN_RADIUS
    return np.array([pos[0], pos[1], table_z + BLOCK_HALF + 0.01]), obj.yaw, 2 * BLOCK_HALF


@dataclass
class _Waypoint:
    t: float
    pos: np.ndarray  # (3,) target of the grasp point
    rot: np.ndarray  # (3, 3) tool orientation
    grip: float  # commanded closedness


def _waypoints(
    scene: Scene, spec: SceneSpec, start_pos: np.ndarray, start_rot: np.ndarray
) -> list[_Waypoint]:
    """Grasp-point waypoints of ``spec.task`` (positions of the point between the rendered fingers)."""
    task, lay, robot = spec.task, scene.layout, scene.robot
    skill = task["skill"]
    miss = np.array([*task["grasp_offset_xy"], 0.0])
    up = np.array([0.0, 0.0, 1.0])
    wps = [_Waypoint(0.0, start_pos, start_rot, 0.0)]

    def add(t: float, pos: np.ndarray, rot: np.ndarray, grip: float) -> None:
        wps.append(_Waypoint(t, pos, rot, grip))

    if skill in ("pick", "move_near", "place_into_drawer"):
        grasp, yaw, _ = _object_grasp_point(spec, task["target"], lay.table_top_z)
        grasp = grasp + miss
        rot = grasp_rotation(robot, None if yaw is None else yaw, math.pi / 2)
        times = _PICK_TIMES if skill == "pick" else _MOVE_TIMES
        add(times["hover"], grasp + lay.hover_m * up, rot, 0.0)
        add(times["reach"], grasp, rot, 0.0)
        add(times["close"], grasp, rot, 1.0)
        if skill == "pick":
            add(times["lift"], grasp + 0.15 * up, rot, 1.0)
            return wps
        add(times["lift"], grasp + lay.hover_m * up, rot, 1.0)
        height = grasp[2] - lay.table_top_z  # grasp height above the object's base
        if skill == "move_near":
            ref = np.array(spec.object(task["reference"]).position)
            here = np.array(spec.object(task["target"]).position)
            away = here[:2] - ref[:2]
            away /= max(np.linalg.norm(away), 1e-6)
            place = np.array([*(ref[:2] + 0.11 * away), lay.table_top_z + height])
        else:
            drawer = DRAWER_NAMES.index(task["drawer"])
            opening = spec.cabinet.openings[drawer]
            frame = scene.cabinet_frame()
            # Middle of the tray part that sticks out of the cabinet (reachable from above).
            idp = CAB_DEPTH / 2 - PANEL
            x_local = (-opening - idp + (-CAB_DEPTH / 2)) / 2
            floor_z = scene.drawer_center_z(drawer) - 0.035 + 0.012
            centre = frame @ np.array([x_local, 0.0, floor_z, 1.0])
            place = np.array([centre[0], centre[1], centre[2] + height + 0.005])
        add(times["carry"], place + lay.hover_m * up, rot, 1.0)
        add(times["lower"], place, rot, 1.0)
        add(times["open"], place, rot, 0.0)
        add(times["retreat"], place + lay.hover_m * up, rot, 0.0)
        return wps

    drawer = DRAWER_NAMES.index(task["drawer"])
    opening = spec.cabinet.openings[drawer]
    handle = scene.handle_position(drawer, opening) + miss
    pull = -scene.cabinet_frame()[:3, 0]  # drawers open along the cabinet's -x
    rot = grasp_rotation(robot, math.atan2(pull[1], pull[0]), math.pi)
    target_opening = (
        float(np.clip(opening + 0.12, 0, DRAWER_TRAVEL)) if skill == "open_drawer" else 0.0
    )
    end = handle + (target_opening - opening) * pull
    t = _DRAWER_TIMES
    add(t["hover"], handle + lay.hover_m * up, rot, 0.0)
    add(t["reach"], handle, rot, 0.0)
    add(t["close"], handle, rot, 1.0)
    add(t["pull"], end, rot, 1.0)
    add(t["open"], end, rot, 0.0)
    add(t["retreat"], end + 0.08 * up, rot, 0.0)
    return wps


def _slerp(r0: np.ndarray, r1: np.ndarray, s: float) -> np.ndarray:
    q0, q1 = matrix_to_quat(r0), matrix_to_quat(r1)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
    else:
        theta = math.acos(dot)
        q = (math.sin((1 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)
    return quat_to_matrix(q / np.linalg.norm(q))


def _interpolate(wps: list[_Waypoint], u: float) -> tuple[np.ndarray, np.ndarray, float]:
    for a, b in itertools.pairwise(wps):
        if u <= b.t + 1e-9:
            s = 0.0 if b.t <= a.t else (u - a.t) / (b.t - a.t)
            s_pos = s * s * (3 - 2 * s)  # smoothstep: zero velocity at each waypoint
            return (
                a.pos + s_pos * (b.pos - a.pos),
                _slerp(a.rot, b.rot, s_pos),
                a.grip + s * (b.grip - a.grip),
            )
    last = wps[-1]
    return last.pos, last.rot, last.grip


def tcp_targets(scene: Scene, spec: SceneSpec, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The scripted TCP targets and gripper commands of ``spec.task``, one per frame.

    ``scene`` must already be reset to ``spec`` (the waypoints read drawer handles and objects from
    the built scene). The skill starts at FK of ``spec.start_q`` (the robot's home if unset).

    Returns:
        ``(targets (T, 4, 4) TCP poses in the base frame, commands (T,) closedness 0..1)``.
    """
    robot, offset = scene.robot, scene.layout.grasp_offset_m
    q = np.asarray(spec.start_q or robot.home_q, dtype=np.float64)
    start_pose = robot.ee_pose(q)
    start_rot = quat_to_matrix(start_pose[3:])
    # The waypoints are of the grasp point, ``offset`` along the tool z axis from the TCP.
    wps = _waypoints(scene, spec, start_pose[:3] + offset * start_rot[:, 2], start_rot)
    targets = np.tile(np.eye(4), (num_frames, 1, 1))
    commands = np.zeros(num_frames)
    for t in range(num_frames):
        pos, rot, commands[t] = _interpolate(wps, t / (num_frames - 1))
        targets[t, :3, :3] = rot
        targets[t, :3, 3] = pos - offset * rot[:, 2]
    return targets, commands


def execute(
    scene: Scene,
    spec: SceneSpec,
    num_frames: int,
    main_camera: str | None = None,
    render: tuple[str, ...] | None = None,
) -> Rollout:
    """Run ``spec.task`` in ``scene`` for ``num_frames`` frames; deterministic given ``spec``.

    ``main_camera`` (default: the spec's first camera) gets the masks; ``render`` limits which
    cameras are rendered (default all; the main one always is); ``Rollout.cameras`` has them all.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames = {num_frames}; an episode needs at least 2 frames")
    robot, lay = scene.robot, scene.layout
    scene.reset(spec)
    task = spec.task
    names = [c.name for c in spec.cameras]
    main = main_camera or names[0]
    rendered = set(names if render is None else render) | {main}
    q = np.asarray(spec.start_q or robot.home_q, dtype=np.float64)
    offset = lay.grasp_offset_m
    targets, commands = tcp_targets(scene, spec, num_frames)

    held: str | None = None  # object name, or "drawer:<index>"
    held_from_tcp = np.eye(4)
    grasp_state: tuple[np.ndarray, float] = (np.zeros(3), 0.0)
    stop = 1.0  # closedness at which the fingers touch what they hold
    released_in_drawer: dict[str, int] = {}
    start_z = {o.name: o.position[2] for o in spec.objects}
    qs, grips, cmds, poses = [], [], [], []
    images: dict[str, list[np.ndarray]] = {n: [] for n in names}
    gmasks, omasks, max_err = [], [], 0.0
    cameras0: dict[str, PinholeCamera] = {}
    target = task.get("target") or f"{task['drawer']} drawer"
    pull = -scene.cabinet_frame()[:3, 0]
    prev_cmd = 0.0
    for t in range(num_frames):
        tcp_target, cmd = targets[t], float(commands[t])
        goal = matrix_to_pose(tcp_target)
        res = robot.ik(goal, q, restarts=0, max_iters=60, tol=5e-4, rot_tol_deg=0.5)
        if res.pos_err_m > 3e-3:  # warm start stuck (a big step): pay for random restarts
            retry = robot.ik(goal, q, restarts=4, max_iters=60, tol=5e-4, rot_tol_deg=0.5, seed=t)
            res = retry if retry.pos_err_m < res.pos_err_m else res
        q = res.q
        tcp = robot.ee_pose(q)
        tcp_m = pose_to_matrix(tcp)
        point = tcp_m[:3, 3] + offset * tcp_m[:3, 2]
        max_err = max(max_err, res.pos_err_m)
        # What the hand holds follows it first; then grasp while the fingers close and release as
        # soon as they open (edge-triggered on the command, so it works at any frame rate).
        if held is not None and held.startswith("drawer:"):
            p0, o0 = grasp_state
            scene.set_drawer(int(held.split(":")[1]), o0 + float((point - p0) @ pull))
        elif held is not None:
            m = tcp_m @ held_from_tcp
            scene.set_object_pose(held, m[:3, 3], matrix_to_quat(m[:3, :3]))
        if held is None and cmd > prev_cmd + 1e-9:
            held, stop = _try_grasp(scene, spec, point, tcp_m, cmd)
            if held is not None and held.startswith("drawer:"):
                grasp_state = (point.copy(), scene.drawer_opening(int(held.split(":")[1])))
            elif held is not None:
                obj_pos, obj_quat = scene.object_pose(held)
                held_from_tcp = np.linalg.inv(tcp_m) @ pose_to_matrix(
                    np.concatenate([obj_pos, obj_quat])
                )
        elif held is not None and cmd < prev_cmd - 1e-9:
            if not held.startswith("drawer:"):
                drawer = _drop(scene, held)
                if drawer is not None:
                    released_in_drawer[held] = drawer
            held = None
        grip = min(cmd, stop) if held is not None else cmd
        scene.set_robot(q, grip)
        for name in names:
            cam = scene.camera(name)
            if t == 0:
                cameras0[name] = cam
            if name not in rendered:
                continue
            rgb, seg = scene.render(cam)
            images[name].append(rgb)
            if name == main:
                gmasks.append(scene.gripper_mask(seg))
                omasks.append(scene.object_mask(seg, target))
        qs.append(q.copy())
        grips.append(grip)
        cmds.append(cmd)
        prev_cmd = cmd
        poses.append(tcp)
    success = bool(_success(scene, spec, held, released_in_drawer, start_z))
    return Rollout(
        spec=spec,
        instruction=task["instruction"],
        skill=task["skill"],
        success=success,
        q=np.asarray(qs, dtype=np.float32),
        gripper=np.asarray(grips, dtype=np.float32),
        gripper_command=np.asarray(cmds, dtype=np.float32),
        tcp_pose=np.asarray(poses, dtype=np.float32),
        images={n: np.stack(v) for n, v in images.items() if v},
        gripper_masks=np.stack(gmasks),
        object_masks=np.stack(omasks),
        cameras=cameras0,
        max_ik_error_m=max_err,
    )


def _try_grasp(
    scene: Scene, spec: SceneSpec, point: np.ndarray, tcp_m: np.ndarray, cmd: float
) -> tuple[str | None, float]:
    """What closing the gripper at ``point`` catches: (object name / "drawer:i" / None, stop closedness)."""
    max_open = scene.layout.max_opening_m
    for obj in spec.objects:
        pos, quat = scene.object_pose(obj.name)
        local = quat_to_matrix(quat).T @ (point - pos)
        if obj.kind == "can":
            inside = (
                math.hypot(local[0], local[1]) < CAN_RADIUS - 0.005
                and abs(local[2]) < CAN_HEIGHT / 2 + 0.01
            )
            width = 2 * CAN_RADIUS
        else:
            inside = (
                bool(np.all(np.abs(local[:2]) < BLOCK_HALF)) and abs(local[2]) < BLOCK_HALF + 0.01
            )
            width = 2 * BLOCK_HALF
        if inside:
            return obj.name, float(np.clip(1.0 - width / max_open, 0.0, 1.0))
    frame_inv = np.linalg.inv(scene.cabinet_frame())
    for i in range(len(DRAWER_NAMES)):
        handle = scene.handle_position(i)
        local = frame_inv[:3, :3] @ (point - handle)
        if abs(local[0]) < 0.02 and abs(local[1]) < 0.06 and abs(local[2]) < 0.025:
            return f"drawer:{i}", float(np.clip(1.0 - 0.016 / max_open, 0.0, 1.0))
    return None, 1.0


def _drop(scene: Scene, name: str) -> int | None:
    """Let a released object fall upright onto a drawer tray (returned index) or the table."""
    obj = next(o for o in scene.spec.objects if o.name == name)  # type: ignore[union-attr]
    pos, quat = scene.object_pose(name)
    rot = quat_to_matrix(quat)
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    half_h = CAN_HEIGHT / 2 if obj.kind == "can" else BLOCK_HALF
    upright = np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])
    frame_inv = np.linalg.inv(scene.cabinet_frame())
    for i in range(len(DRAWER_NAMES)):
        floor, half = scene.drawer_floor(i)
        local = frame_inv[:3, :3] @ (pos - floor)
        exposed = (frame_inv @ np.array([*pos, 1.0]))[0] < -CAB_DEPTH / 2  # in front of the cabinet
        if exposed and abs(local[0]) < half[0] and abs(local[1]) < half[1] and pos[2] > floor[2]:
            scene.set_object_pose(name, np.array([pos[0], pos[1], floor[2] + half_h]), upright)
            return i
    scene.set_object_pose(
        name, np.array([pos[0], pos[1], scene.layout.table_top_z + half_h]), upright
    )
    return None


def _success(
    scene: Scene,
    spec: SceneSpec,
    held: str | None,
    in_drawer: dict[str, int],
    start_z: dict[str, float],
) -> bool:
    task = spec.task
    skill = task["skill"]
    if skill == "pick":
        z = scene.object_pose(task["target"])[0][2]
        return held == task["target"] and z - start_z[task["target"]] >= LIFT_SUCCESS_M
    if skill == "move_near":
        a = scene.object_pose(task["target"])[0]
        b = scene.object_pose(task["reference"])[0]
        moved = np.linalg.norm(a[:2] - np.array(spec.object(task["target"]).position[:2])) > 0.03
        return held is None and moved and float(np.linalg.norm(a[:2] - b[:2])) <= NEAR_SUCCESS_M
    drawer = DRAWER_NAMES.index(task["drawer"])
    if skill == "open_drawer":
        return scene.drawer_opening(drawer) >= OPEN_SUCCESS_M
    if skill == "close_drawer":
        return scene.drawer_opening(drawer) <= CLOSED_SUCCESS_M
    return held is None and in_drawer.get(task["target"]) == drawer
