"""Robot models: a URDF in its own pybullet DIRECT client, FK / IK, keypoints, default camera.

``RobotModel(spec)`` loads ``spec.urdf`` with a fixed base at the origin, so the world frame *is* the
robot base frame (the URDF root link frame). Joint names, types and limits are introspected from the
URDF through pybullet. Every instance owns a private physics client (never pybullet's implicit global
one), released by ``close()`` or garbage collection, so many models and subprocess workers coexist.

Joint vectors: ``q`` (J,) or (T, J) holds the *controlled* arm joints, ``spec.arm_joints`` order. The
gripper value (0.0 = fully open, 1.0 = fully closed) drives ``spec.gripper_joints`` linearly; other
movable joints sit at ``spec.fixed_joints`` (default 0). Poses are ``[x, y, z, qx, qy, qz, qw]``.

Gripper-only path (RT-1 logs a TCP pose, no joints): ``gripper_keypoints(tcp_pose, gripper)`` returns the
same (T, P, 3) layout as ``keypoints``; keypoints rigidly attached to the TCP (``gripper_mask``: links
below the last arm joint, e.g. palm and fingers) are computed from the TCP pose, the others are NaN.
``SkeletonRenderer`` skips NaN points, so it draws only the gripper. For the full arm from a TCP pose,
solve ``ik`` first.

FK and IK run on the model's own pybullet body, so they move it; to render the body with
``getCameraImage`` (the synthetic scene does), call ``set_joint_state(q, gripper)`` just before.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb

from kinematics.camera import PinholeCamera
from kinematics.spec import KeypointSpec
from kinematics.transforms import (
    invert,
    matrix_to_pose,
    pose_to_matrix,
    transform_points,
    xyz_rpy_to_matrix,
)
from vap_env.config import did_you_mean

_MOVABLE = (pb.JOINT_REVOLUTE, pb.JOINT_PRISMATIC)


@dataclass(frozen=True)
class IKResult:
    """Result of ``RobotModel.ik``: joint solution (J,) and its residual to the target."""

    q: np.ndarray
    pos_err_m: float
    rot_err_deg: float
    converged: bool
    iterations: int


class LinkPoses(Mapping[str, np.ndarray]):
    """Frame name -> pose (..., 7) ``[x, y, z, qx, qy, qz, qw]`` in the base frame (URDF links + TCP)."""

    def __init__(self, poses: dict[str, np.ndarray]) -> None:
        self._poses = poses

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._poses[name]
        except KeyError:
            names = list(self._poses)
            raise KeyError(
                f"no frame {name!r}; frames are {names}.{did_you_mean(name, names)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._poses)

    def __len__(self) -> int:
        return len(self._poses)

    def matrix(self, name: str) -> np.ndarray:
        """Pose of ``name`` as homogeneous transforms (..., 4, 4)."""
        return pose_to_matrix(self[name])


def _disconnect(client: int) -> None:
    if pb.getConnectionInfo(physicsClientId=client)["isConnected"]:
        pb.disconnect(physicsClientId=client)


class RobotModel:
    """A robot from a ``KeypointSpec``: URDF kinematics in a private pybullet DIRECT client.

    Args:
        spec: the robot's keypoint/control spec; its URDF is loaded with a fixed base at the origin.
        geometry: load the URDF's visual and collision shapes (needed for ``getCameraImage`` or
            contacts in ``client_id``). ``False`` loads kinematics only: same FK/IK/keypoints, and
            about 5x faster to create (the shapes dominate the load time).
    """

    def __init__(self, spec: KeypointSpec, *, geometry: bool = True) -> None:
        self.spec = spec
        self.name = spec.name
        self.urdf_path: Path = spec.urdf_path()
        self._client = pb.connect(pb.DIRECT)
        if self._client < 0:
            raise RuntimeError("pybullet could not open a DIRECT client (too many open clients?)")
        self._finalizer = weakref.finalize(self, _disconnect, self._client)
        try:
            self._body = self._load_urdf(geometry)
            self._introspect()
            self._validate_spec()
        except Exception:
            self.close()
            raise
        self._kp_links = [
            self._ee_parent if k.link == self.ee_link else self._link_index[k.link]
            for k in spec.keypoints
        ]
        self._kp_offsets = np.array([k.offset for k in spec.keypoints])  # (P, 3)
        closed = [
            k.offset_closed if k.offset_closed is not None else k.offset for k in spec.keypoints
        ]
        self._kp_offsets_delta = np.array(closed) - self._kp_offsets  # (P, 3)
        self.gripper_mask = self._gripper_attached()
        # calculateJacobian's point is in the ee *link* frame (pybullet's docs say centre of mass, but
        # finite differences of FK agree with the link frame: see test_ik_jacobian_matches_...).
        self._jac_point = self._ee_offset[:3, 3].tolist()
        self._camera_cache: PinholeCamera | None = None

    # ------------------------------------------------------------------ introspection
    def _load_urdf(self, geometry: bool) -> int:
        flags = pb.URDF_USE_INERTIA_FROM_FILE
        if not geometry:
            flags |= pb.URDF_IGNORE_VISUAL_SHAPES | pb.URDF_IGNORE_COLLISION_SHAPES
        try:
            return pb.loadURDF(
                str(self.urdf_path), useFixedBase=True, flags=flags, physicsClientId=self._client
            )
        except pb.error as err:  # "Cannot load URDF file.": which file, and why it may fail
            raise ValueError(
                f"robot {self.name!r}: pybullet cannot load the URDF {str(self.urdf_path)!r} ({err}); "
                "check that it is well-formed XML and that its mesh paths resolve from its directory"
            ) from None

    def _introspect(self) -> None:
        c, b = self._client, self._body
        base_name = pb.getBodyInfo(b, physicsClientId=c)[0].decode()
        self._link_index: dict[str, int] = {base_name: -1}
        self._parent_joint: dict[int, int] = {}  # link index -> parent link index
        self._joint_index: dict[str, int] = {}
        self._joint_child: dict[str, int] = {}
        movable: list[str] = []
        lower: dict[str, float] = {}
        upper: dict[str, float] = {}
        self._joint_type: dict[str, int] = {}
        for i in range(pb.getNumJoints(b, physicsClientId=c)):
            info = pb.getJointInfo(b, i, physicsClientId=c)
            jname, jtype, lo, hi = info[1].decode(), info[2], info[8], info[9]
            self._link_index[info[12].decode()] = i
            self._parent_joint[i] = info[16]
            self._joint_index[jname] = i
            self._joint_type[jname] = jtype
            if jtype in _MOVABLE:
                movable.append(jname)
                # pybullet reports lower > upper for continuous/unlimited joints.
                lower[jname], upper[jname] = (lo, hi) if lo <= hi else (-np.inf, np.inf)
        self.base_link = base_name
        self.all_joint_names: list[str] = movable
        self._all_lower = np.array([lower[n] for n in movable])
        self._all_upper = np.array([upper[n] for n in movable])
        self._movable_idx = [self._joint_index[n] for n in movable]
        self.link_names: list[str] = list(self._link_index)
        self._lower_map, self._upper_map = lower, upper

    def _check_joint(self, name: str, role: str) -> None:
        if name not in self._joint_index:
            names = list(self._joint_index)
            raise ValueError(
                f"spec {self.name!r}: {role} joint {name!r} is not in {self.urdf_path.name}; joints are "
                f"{names}.{did_you_mean(name, names)}"
            )
        if self._joint_type[name] not in _MOVABLE:
            raise ValueError(
                f"spec {self.name!r}: {role} joint {name!r} is fixed in the URDF; list only movable joints"
            )

    def _check_link(self, name: str, role: str) -> None:
        if name not in self._link_index:
            names = self.link_names
            raise ValueError(
                f"spec {self.name!r}: {role} link {name!r} is not in {self.urdf_path.name}; links are "
                f"{names}.{did_you_mean(name, names)}"
            )

    def _validate_spec(self) -> None:
        spec = self.spec
        for j in spec.arm_joints:
            self._check_joint(j, "arm")
        for j in spec.gripper_joints:
            self._check_joint(j, "gripper")
        for j in spec.fixed_joints:
            self._check_joint(j, "fixed")
        self._check_link(spec.ee.link, "ee")
        if spec.ee.name != spec.ee.link and spec.ee.name in self._link_index:
            raise ValueError(
                f"spec {self.name!r}: ee name {spec.ee.name!r} is already a URDF link; name the TCP "
                "frame differently or set link to it with a zero offset"
            )
        for kp in spec.keypoints:
            if kp.link != spec.ee.name:
                self._check_link(kp.link, f"keypoint {kp.name!r}")
        if spec.camera is not None and spec.camera.link is not None:
            self._check_link(spec.camera.link, "camera")

        self.joint_names: list[str] = list(spec.arm_joints)
        self.num_joints = len(self.joint_names)
        self.lower = np.array([self._lower_map[n] for n in self.joint_names])
        self.upper = np.array([self._upper_map[n] for n in self.joint_names])
        home = np.array(spec.home)
        if np.any(home < self.lower - 1e-6) or np.any(home > self.upper + 1e-6):
            raise ValueError(
                f"spec {self.name!r}: home {home.tolist()} is outside the URDF limits "
                f"[{self.lower.tolist()}, {self.upper.tolist()}]"
            )
        self.home_q = home
        self.ee_link = spec.ee.name
        self._ee_parent = self._link_index[spec.ee.link]
        self._ee_offset = xyz_rpy_to_matrix(np.array(spec.ee.xyz), np.array(spec.ee.rpy))  # (4, 4)
        pos = {n: i for i, n in enumerate(self.all_joint_names)}
        self._arm_cols = np.array([pos[n] for n in self.joint_names])
        self._grip_cols = np.array([pos[n] for n in spec.gripper_joints], dtype=int)
        self._grip_open = np.array([v[0] for v in spec.gripper_joints.values()])
        self._grip_closed = np.array([v[1] for v in spec.gripper_joints.values()])
        self._base_full = np.zeros(len(self.all_joint_names))
        for n, v in spec.fixed_joints.items():
            self._base_full[pos[n]] = v
        self._base_full = np.clip(self._base_full, self._all_lower, self._all_upper)

    def _ancestor_joints(self, link: int) -> set[int]:
        out: set[int] = set()
        while link >= 0:
            out.add(link)
            link = self._parent_joint[link]
        return out

    def _gripper_attached(self) -> np.ndarray:
        """(P,) bool: keypoints whose pose relative to the TCP does not depend on any arm joint."""
        arm = {self._joint_index[n] for n in self.joint_names}
        ee_arm = self._ancestor_joints(self._ee_parent) & arm
        mask = []
        for kp in self.spec.keypoints:
            link = self._ee_parent if kp.link == self.ee_link else self._link_index[kp.link]
            mask.append((self._ancestor_joints(link) & arm) == ee_arm)
        return np.array(mask)

    # ------------------------------------------------------------------ lifecycle
    @property
    def client_id(self) -> int:
        """The pybullet physics client id owned by this model (read-only use)."""
        return self._client

    @property
    def body_id(self) -> int:
        """The pybullet body id of the robot inside ``client_id``."""
        return self._body

    def close(self) -> None:
        """Disconnect the private pybullet client (idempotent; also runs on garbage collection)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run."""
        return not self._finalizer.alive

    def __enter__(self) -> RobotModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RobotModel({self.name!r}, J={self.num_joints}, urdf={str(self.urdf_path)!r})"

    # ------------------------------------------------------------------ input checks
    def _check_q(self, q: np.ndarray | list[float], name: str = "q") -> np.ndarray:
        if self.closed:
            raise RuntimeError(
                f"RobotModel {self.name!r} is closed; create a new one with load_robot"
            )
        arr = np.asarray(q, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.num_joints:
            raise ValueError(
                f"{name} has shape {arr.shape}; {self.name} expects (J,) or (T, J) with J = "
                f"{self.num_joints} joints {self.joint_names}"
            )
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            raise ValueError(
                f"{name} contains NaN/inf (first at index {bad}); pass finite joint values"
            )
        return arr

    def _check_gripper(self, gripper: float | np.ndarray | None, t: int) -> np.ndarray:
        if gripper is None:
            return np.zeros(t)
        g = np.asarray(gripper, dtype=np.float64).reshape(-1)
        if g.size == 1:
            g = np.full(t, g[0])
        if g.shape != (t,):
            raise ValueError(
                f"gripper has {g.size} values for {t} frames; pass a scalar or shape ({t},)"
            )
        if not np.all(np.isfinite(g)) or np.any(g < -1e-6) or np.any(g > 1 + 1e-6):
            raise ValueError(
                f"gripper values must be finite in [0, 1] (0 open, 1 closed); got min={np.nanmin(g)}, "
                f"max={np.nanmax(g)}"
            )
        return np.clip(g, 0.0, 1.0)

    def _full_q(self, q: np.ndarray, gripper: np.ndarray) -> np.ndarray:
        """(T, J) arm joints + (T,) gripper -> (T, M) all movable joints in URDF order."""
        full = np.repeat(self._base_full[None], q.shape[0], axis=0)
        full[:, self._arm_cols] = q
        if self._grip_cols.size:
            full[:, self._grip_cols] = self._grip_open + gripper[:, None] * (
                self._grip_closed - self._grip_open
            )
        return full

    def set_joint_state(self, q: np.ndarray, gripper: float | None = None) -> None:
        """Pose the pybullet body (``body_id`` in ``client_id``) at arm joints q (J,) and a gripper value.

        Finger joints follow the gripper value and other movable joints ``spec.fixed_joints``, so
        ``pybullet.getCameraImage`` on ``client_id`` renders exactly the configuration FK computes.
        FK, IK and ``default_camera`` reuse this body and move it: call this right before rendering.
        """
        arr = self._check_q(q)
        if arr.ndim != 1:
            raise ValueError(
                f"q has shape {arr.shape}; set_joint_state takes one configuration (J,)"
            )
        full = self._full_q(arr[None], self._check_gripper(gripper, 1))[0]
        pb.resetJointStatesMultiDof(
            self._body, self._movable_idx, [[v] for v in full], physicsClientId=self._client
        )

    # ------------------------------------------------------------------ forward kinematics
    def _link_matrices(self, q_full: np.ndarray, links: list[int]) -> np.ndarray:
        """(T, M) full joint vectors -> (T, L, 4, 4) link frames (URDF frames, not inertial)."""
        c, b = self._client, self._body
        moving = [i for i in links if i >= 0]
        out = np.empty((q_full.shape[0], len(links), 7))
        out[:] = (0, 0, 0, 0, 0, 0, 1)  # the base link frame is the world frame
        cols = [j for j, i in enumerate(links) if i >= 0]
        for t in range(q_full.shape[0]):
            pb.resetJointStatesMultiDof(
                b, self._movable_idx, [[v] for v in q_full[t]], physicsClientId=c
            )
            if moving:
                states = pb.getLinkStates(b, moving, computeForwardKinematics=1, physicsClientId=c)
                out[t, cols] = [s[4] + s[5] for s in states]
        return pose_to_matrix(out)

    def fk(self, q: np.ndarray, gripper: float | np.ndarray | None = None) -> LinkPoses:
        """Poses of every link and of the TCP frame. q: (J,) or (T, J) -> LinkPoses of (7,) or (T, 7)."""
        arr = self._check_q(q)
        qt = arr.reshape(-1, self.num_joints)
        g = self._check_gripper(gripper, qt.shape[0])
        links = list(self._link_index.values())
        mats = self._link_matrices(self._full_q(qt, g), links)  # (T, L, 4, 4)
        poses = {n: matrix_to_pose(mats[:, i]) for i, n in enumerate(self._link_index)}
        ee = mats[:, links.index(self._ee_parent)] @ self._ee_offset
        poses[self.ee_link] = matrix_to_pose(ee)
        if arr.ndim == 1:
            poses = {k: v[0] for k, v in poses.items()}
        return LinkPoses(poses)

    def _ee_matrix(self, q_full: np.ndarray) -> np.ndarray:
        return self._link_matrices(q_full, [self._ee_parent])[:, 0] @ self._ee_offset  # (T, 4, 4)

    def ee_pose(self, q: np.ndarray) -> np.ndarray:
        """TCP pose in the base frame. q: (J,) or (T, J) -> (7,) or (T, 7)."""
        arr = self._check_q(q)
        qt = arr.reshape(-1, self.num_joints)
        pose = matrix_to_pose(self._ee_matrix(self._full_q(qt, np.zeros(len(qt)))))
        return pose[0] if arr.ndim == 1 else pose

    def link_to_tcp(self, link: str) -> np.ndarray:
        """The fixed transform (4, 4) from ``link``'s frame to the TCP: ``T_tcp = T_link @ it``.

        For datasets that log another frame than the TCP: DROID's ``cartesian_position`` is the
        flange (``panda_link8``, Polymetis' end-effector link), 0.15 m behind the Robotiq's TCP.

        Raises:
            ValueError: ``link`` is not a link of the URDF, or an arm joint moves it relative to
                the TCP (no fixed transform exists).
        """
        self._check_link(link, "logged")
        arm = {self._joint_index[n] for n in self.joint_names}
        idx = self._link_index[link]
        if self._ancestor_joints(idx) & arm != self._ancestor_joints(self._ee_parent) & arm:
            raise ValueError(
                f"robot {self.name!r}: link {link!r} is not rigidly attached to the TCP (an arm joint "
                f"lies between it and {self.spec.ee.link!r}); name a link of the hand or the flange"
            )
        full = self._full_q(self.home_q[None], np.zeros(1))
        link_m, parent_m = self._link_matrices(full, [idx, self._ee_parent])[0]  # (4, 4) each
        return invert(link_m) @ parent_m @ self._ee_offset

    def _keypoint_offsets(self, gripper: np.ndarray) -> np.ndarray:
        """(T,) gripper -> (T, P, 3) keypoint offsets in their link frames."""
        return self._kp_offsets[None] + gripper[:, None, None] * self._kp_offsets_delta[None]

    def keypoints(self, q: np.ndarray, gripper: float | np.ndarray | None = None) -> np.ndarray:
        """Skeleton keypoints in the base frame. q: (T, J) or (J,), gripper: (T,) or scalar -> (T, P, 3) or (P, 3)."""
        arr = self._check_q(q)
        qt = arr.reshape(-1, self.num_joints)
        g = self._check_gripper(gripper, qt.shape[0])
        uniq = sorted(set(self._kp_links) | {self._ee_parent})
        mats = self._link_matrices(self._full_q(qt, g), uniq)  # (T, L, 4, 4)
        col = {link: i for i, link in enumerate(uniq)}
        frames = mats[:, [col[i] for i in self._kp_links]]  # (T, P, 4, 4)
        on_ee = np.array([k.link == self.ee_link for k in self.spec.keypoints])
        if on_ee.any():
            ee = mats[:, col[self._ee_parent]] @ self._ee_offset
            frames[:, on_ee] = ee[:, None]
        pts = transform_points(frames, self._keypoint_offsets(g))
        return pts[0] if arr.ndim == 1 else pts

    def gripper_keypoints(
        self, tcp_pose: np.ndarray, gripper: float | np.ndarray | None = None
    ) -> np.ndarray:
        """Keypoints from a TCP pose alone (no joints). tcp_pose: (T, 7) or (7,) -> (T, P, 3) or (P, 3).

        Same P and order as ``keypoints``; points not rigidly attached to the TCP (``~gripper_mask``,
        the arm) are NaN. ``tcp_pose[k, 3:]`` is an xyzw quaternion (normalised here).
        """
        pose = np.asarray(tcp_pose, dtype=np.float64)
        if pose.ndim not in (1, 2) or pose.shape[-1] != 7:
            raise ValueError(
                f"tcp_pose has shape {pose.shape}; expected (7,) or (T, 7) [x,y,z,qx,qy,qz,qw]"
            )
        if not np.all(np.isfinite(pose)):
            raise ValueError("tcp_pose contains NaN/inf; pass finite poses")
        pt = pose.reshape(-1, 7)
        if np.any(np.linalg.norm(pt[:, 3:], axis=1) < 1e-6):
            raise ValueError("tcp_pose has a zero quaternion; pass a unit quaternion [qx,qy,qz,qw]")
        g = self._check_gripper(gripper, pt.shape[0])
        local = self._gripper_local(g)  # (T, P, 3) in the TCP frame, NaN off the gripper
        pts = transform_points(pose_to_matrix(pt)[:, None], local)
        return pts[0] if pose.ndim == 1 else pts

    def _gripper_local(self, gripper: np.ndarray) -> np.ndarray:
        """(T,) gripper -> (T, P, 3) keypoints in the TCP frame (NaN where not gripper-attached)."""
        uniq, inverse = np.unique(gripper, return_inverse=True)
        home = np.repeat(self.home_q[None], len(uniq), axis=0)
        world = self.keypoints(home, uniq)  # (U, P, 3)
        tcp = self._ee_matrix(self._full_q(home, uniq))  # (U, 4, 4)
        local = transform_points(invert(tcp)[:, None], world)
        local[:, ~self.gripper_mask] = np.nan
        return local[inverse.reshape(-1)]

    # ------------------------------------------------------------------ inverse kinematics
    def _tcp_matrix(self, q_full: np.ndarray) -> np.ndarray:
        """(M,) full joints -> (4, 4) TCP frame. Scalar pybullet calls: the IK inner loop is hot."""
        c, b = self._client, self._body
        pb.resetJointStatesMultiDof(b, self._movable_idx, [[v] for v in q_full], physicsClientId=c)
        link = np.eye(4)
        if self._ee_parent >= 0:
            state = pb.getLinkState(
                b, self._ee_parent, computeForwardKinematics=1, physicsClientId=c
            )
            link[:3, :3] = np.reshape(pb.getMatrixFromQuaternion(state[5]), (3, 3))
            link[:3, 3] = state[4]
        return link @ self._ee_offset

    def _jacobian(self, q_full: np.ndarray) -> np.ndarray:
        """(M,) full joints -> (6, J) TCP Jacobian (linear; angular) w.r.t. the arm joints, base frame."""
        zeros = [0.0] * len(q_full)
        lin, ang = pb.calculateJacobian(
            self._body,
            self._ee_parent,
            self._jac_point,
            q_full.tolist(),
            zeros,
            zeros,
            physicsClientId=self._client,
        )
        jac = np.vstack([np.asarray(lin), np.asarray(ang)])  # (6, M)
        return jac[:, self._arm_cols]

    def _ik_error(self, q_full: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(6,) [position error (m); rotation error as a base-frame rotation vector (rad)]."""
        cur = self._tcp_matrix(q_full)
        rotvec, _ = cv2.Rodrigues(target[:3, :3] @ cur[:3, :3].T)
        return np.concatenate([target[:3, 3] - cur[:3, 3], rotvec.ravel()])

    def _dls(
        self,
        q: np.ndarray,
        target: np.ndarray,
        gripper: float,
        iters: int,
        tol: float,
        rot_tol: float,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Damped least squares refinement of arm joints q (J,) toward target (4, 4)."""
        lo, hi = self.lower, self.upper
        g = np.array([gripper])
        full = self._full_q(q[None], g)[0]
        err = self._ik_error(full, target)
        for it in range(iters):
            if np.linalg.norm(err[:3]) < tol and np.linalg.norm(err[3:]) < rot_tol:
                return q, err, it
            jac = self._jacobian(full)
            lam = 1e-4 + 0.1 * float(np.linalg.norm(err)) ** 2  # damping grows when far (stability)
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam * np.eye(6), err)
            step = np.max(np.abs(dq))
            if step > 0.5:  # trust region: linearisation is poor for large steps
                dq *= 0.5 / step
            q = np.clip(q + dq, lo, hi)
            full = self._full_q(q[None], g)[0]
            err = self._ik_error(full, target)
        return q, err, iters

    def ik(
        self,
        target_pose: np.ndarray,  # (7,) [x, y, z, qx, qy, qz, qw]
        q_init: np.ndarray | None = None,  # (J,) first guess; None: home
        *,
        gripper: float = 0.0,
        max_iters: int = 100,
        tol: float = 1e-4,
        rot_tol_deg: float = 0.05,
        restarts: int = 8,
        seed: int = 0,
    ) -> IKResult:
        """Joint solution for a TCP pose target (7,) in the base frame, within joint limits.

        Seeds damped least squares (pybullet ``calculateJacobian``) with ``q_init`` and with pybullet's
        null-space ``calculateInverseKinematics``; if neither reaches ``tol`` metres / ``rot_tol_deg``,
        tries ``restarts`` seeded random starts. Returns the best solution and its residual;
        ``converged`` says whether it met the tolerances (unreachable targets return the closest found).
        """
        target_pose = np.asarray(target_pose, dtype=np.float64)
        if target_pose.shape != (7,) or not np.all(np.isfinite(target_pose)):
            raise ValueError(
                f"target_pose must be 7 finite numbers [x,y,z,qx,qy,qz,qw]; got {target_pose!r}"
            )
        q0 = self.home_q if q_init is None else self._check_q(q_init, "q_init")
        if q0.ndim != 1:
            raise ValueError(f"q_init has shape {q0.shape}; pass one configuration (J,)")
        target = pose_to_matrix(target_pose)
        rot_tol = np.radians(rot_tol_deg)

        rng = np.random.default_rng(seed)
        lo = np.where(np.isfinite(self.lower), self.lower, -np.pi)
        hi = np.where(np.isfinite(self.upper), self.upper, np.pi)
        best: tuple[float, np.ndarray, np.ndarray, int] | None = None
        total = 0
        for k in range(2 + restarts):
            # Seeds are made lazily: tracking small steps converges from q_init in 1-3 iterations,
            # and pybullet's IK (hundreds of internal iterations) is only needed for big jumps.
            if k == 0:
                start = np.clip(q0, self.lower, self.upper)
            elif k == 1:
                start = self._pybullet_ik(target, q0, gripper)
            else:
                start = rng.uniform(lo, hi)
            q, err, its = self._dls(start, target, gripper, max_iters, tol, rot_tol)
            total += its
            score = float(np.linalg.norm(err[:3]) + 0.1 * np.linalg.norm(err[3:]))
            if best is None or score < best[0]:
                best = (score, q, err, its)
            if np.linalg.norm(err[:3]) < tol and np.linalg.norm(err[3:]) < rot_tol:
                break
        assert best is not None
        _, q, _, _ = best
        err = self._ik_error(self._full_q(q[None], np.array([gripper]))[0], target)
        pos_err = float(np.linalg.norm(err[:3]))
        rot_err = float(np.degrees(np.linalg.norm(err[3:])))
        return IKResult(
            q=q,
            pos_err_m=pos_err,
            rot_err_deg=rot_err,
            converged=pos_err < tol and rot_err < rot_tol_deg,
            iterations=total,
        )

    def _pybullet_ik(self, target: np.ndarray, q0: np.ndarray, gripper: float) -> np.ndarray:
        """pybullet's null-space IK for the TCP target (4, 4), as a seed (J,)."""
        c, b = self._client, self._body
        full0 = self._full_q(q0[None], np.array([gripper]))[0]
        pb.resetJointStatesMultiDof(b, self._movable_idx, [[v] for v in full0], physicsClientId=c)
        link_target = target @ invert(self._ee_offset)  # pybullet IK targets the link frame
        lo = np.where(np.isfinite(self._all_lower), self._all_lower, -2 * np.pi)
        hi = np.where(np.isfinite(self._all_upper), self._all_upper, 2 * np.pi)
        if self._ee_parent < 0:
            return q0.copy()
        sol = pb.calculateInverseKinematics(
            b,
            self._ee_parent,
            link_target[:3, 3].tolist(),
            matrix_to_pose(link_target)[3:].tolist(),
            lowerLimits=lo.tolist(),
            upperLimits=hi.tolist(),
            jointRanges=(hi - lo).tolist(),
            restPoses=full0.tolist(),
            maxNumIterations=200,
            residualThreshold=1e-6,
            physicsClientId=c,
        )
        return np.clip(np.asarray(sol)[self._arm_cols], self.lower, self.upper)

    # ------------------------------------------------------------------ camera
    def default_camera(self, width: int | None = None, height: int | None = None) -> PinholeCamera:
        """The spec's default camera (robot head camera or fixed exterior camera), optionally resized.

        With no size, returns ``spec.camera.default_width x default_height`` (e.g. 320x256 for RT-1).
        A link-mounted camera is posed by FK at the home pose with ``spec.fixed_joints`` (head pan/tilt).
        """
        cam_spec = self.spec.camera
        if cam_spec is None:
            raise ValueError(
                f"robot {self.name!r} has no `camera` in its spec; add one or build a PinholeCamera yourself"
            )
        if self._camera_cache is None:
            if cam_spec.link is not None:
                full = self._full_q(self.home_q[None], np.zeros(1))
                pose = self._link_matrices(full, [self._link_index[cam_spec.link]])[0, 0]
            else:
                v = np.asarray(cam_spec.xyz_rpy, dtype=np.float64)
                pose = xyz_rpy_to_matrix(v[:3], v[3:])
            self._camera_cache = PinholeCamera(
                np.array(cam_spec.K), pose, cam_spec.width, cam_spec.height
            )
        w = width if width is not None else (cam_spec.default_width or cam_spec.width)
        h = height if height is not None else (cam_spec.default_height or cam_spec.height)
        if width is not None and height is None:
            h = round(w * cam_spec.height / cam_spec.width)
        if height is not None and width is None:
            w = round(h * cam_spec.width / cam_spec.height)
        return self._camera_cache.resized(int(w), int(h))


# ---------------------------------------------------------------------- registry
def _shipped_specs() -> dict[str, Path]:
    root = Path(str(resources.files("kinematics").joinpath("robots")))
    return {p.stem: p for p in sorted(root.glob("*/*.yaml"))}


_REGISTRY: dict[str, Path] = {}


def register_robot(name: str, spec_path: str | Path) -> None:
    """Make ``load_robot(name)`` load the spec file ``spec_path`` (overrides a shipped robot of that name)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_robot: name must be a non-empty string, got {name!r}")
    path = Path(spec_path)
    if not path.is_file():
        raise FileNotFoundError(f"register_robot({name!r}): spec file {str(path)!r} does not exist")
    KeypointSpec.from_yaml(path)  # a bad spec fails here, not at the first gym.make
    _REGISTRY[name] = path


def available_robots() -> list[str]:
    """Names ``load_robot`` accepts: the shipped specs plus registered ones."""
    return sorted({**_shipped_specs(), **_REGISTRY})


def _cached_spec(path: str) -> KeypointSpec:
    """Parse a spec file once per (path, modification time); specs are immutable, so sharing is safe."""
    p = Path(path)
    mtime = p.stat().st_mtime_ns if p.is_file() else -1
    return _parse_spec(str(p.resolve()) if p.is_file() else path, mtime)


@functools.lru_cache(maxsize=64)
def _parse_spec(path: str, mtime_ns: int) -> KeypointSpec:
    return KeypointSpec.from_yaml(path)


def load_robot(name_or_path: str | Path, *, geometry: bool = True) -> RobotModel:
    """A new ``RobotModel`` for a robot name (``available_robots()``) or a keypoint-spec YAML path.

    ``geometry=False`` skips visual/collision shapes (kinematics only; see ``RobotModel``).
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return RobotModel(_cached_spec(text), geometry=geometry)
    specs = {**_shipped_specs(), **_REGISTRY}
    if text not in specs:
        names = sorted(specs)
        raise KeyError(
            f"unknown robot {text!r}; available: {names}.{did_you_mean(text, names)} "
            "(or pass the path of a keypoint-spec YAML)"
        )
    return RobotModel(_cached_spec(str(specs[text])), geometry=geometry)
