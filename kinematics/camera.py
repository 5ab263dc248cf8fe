"""Pinhole cameras in the OpenCV convention, and the matching pybullet view/projection matrices.

Camera frame: z forward (optical axis), x right, y down — the convention of ``cv2.projectPoints`` and
of ``link_camera`` in the Google robot URDF. The world frame is the robot base frame. Pixel ``(u, v)``
has ``u`` along the image width and ``v`` down the height, with pixel centres at integer coordinates
(OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinematics.transforms import invert, matrix_to_rpy, transform_points, xyz_rpy_to_matrix


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """A pinhole camera: intrinsics ``K`` (3, 3), pose ``world_from_camera`` (4, 4), image size.

    Args:
        K: (3, 3) intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` for a ``width`` x ``height`` image.
        world_from_camera: (4, 4) rigid transform taking camera-frame points to the world (robot base) frame.
        width: image width in pixels.
        height: image height in pixels.
    """

    K: np.ndarray
    world_from_camera: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        k = np.array(self.K, dtype=np.float64)
        pose = np.array(self.world_from_camera, dtype=np.float64)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError(
                f"camera K must be a finite (3, 3) matrix with fx, fy > 0; got {self.K!r}"
            )
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise ValueError(f"world_from_camera must be a finite (4, 4) matrix; got {pose!r}")
        rot = pose[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-5) or np.linalg.det(rot) < 0:
            raise ValueError(
                f"world_from_camera rotation is not a proper rotation (det={np.linalg.det(rot):.4f}); "
                "pass a rigid transform"
            )
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"camera {name} = {v!r} must be a positive integer")
            object.__setattr__(self, name, int(v))
        k.setflags(write=False)
        pose.setflags(write=False)
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "world_from_camera", pose)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_xyz_rpy(
        cls,
        xyz_rpy: np.ndarray,  # (6,)
        K: np.ndarray,  # (3, 3) intrinsics at width x height
        width: int,
        height: int,
    ) -> PinholeCamera:
        """Camera from DROID-style extrinsics ``[x, y, z, roll, pitch, yaw]`` (6,).

        The vector is the pose of the camera's OpenCV optical frame in the robot base frame; the angles
        are extrinsic "xyz" Euler angles (scipy ``from_euler("xyz", ...)``), i.e.
        ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` — the convention of DROID's ``extrinsics_*`` metadata.
        """
        v = np.asarray(xyz_rpy, dtype=np.float64)
        if v.shape != (6,) or not np.all(np.isfinite(v)):
            raise ValueError(
                f"xyz_rpy must be 6 finite numbers [x,y,z,roll,pitch,yaw]; got {xyz_rpy!r}"
            )
        return cls(K, xyz_rpy_to_matrix(v[:3], v[3:]), width, height)

    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,
        target: np.ndarray,
        K: np.ndarray,  # (3, 3) intrinsics at width x height
        width: int,
        height: int,
        up: tuple[float, float, float] = (0.0, 0.0, 1.0),
    ) -> PinholeCamera:
        """Camera at ``eye`` (3,) looking at ``target`` (3,), image 'up' as close to ``up`` as possible."""
        eye = np.asarray(eye, dtype=np.float64)
        z = np.asarray(target, dtype=np.float64) - eye
        if np.linalg.norm(z) < 1e-9:
            raise ValueError(f"look_at: eye {eye.tolist()} and target coincide; move one of them")
        z /= np.linalg.norm(z)
        x = np.cross(z, np.asarray(up, dtype=np.float64))
        if np.linalg.norm(x) < 1e-9:
            raise ValueError(
                f"look_at: view direction {z.tolist()} is parallel to up={up}; pick another up"
            )
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        pose = np.eye(4)
        pose[:3, :3] = np.stack([x, y, z], axis=1)
        pose[:3, 3] = eye
        return cls(K, pose, width, height)

    # ------------------------------------------------------------------ views
    @property
    def camera_from_world(self) -> np.ndarray:
        """(4, 4) inverse of ``world_from_camera``."""
        return invert(self.world_from_camera)

    @property
    def xyz_rpy(self) -> np.ndarray:
        """(6,) the pose in the ``from_xyz_rpy`` convention."""
        return np.concatenate(
            [self.world_from_camera[:3, 3], matrix_to_rpy(self.world_from_camera[:3, :3])]
        )

    def resized(self, width: int, height: int) -> PinholeCamera:
        """The same camera for a resized image: ``fx, cx`` scale by ``width / self.width``, ``fy, cy`` by height.

        Proportional scaling of ``K`` is the convention of SimplerEnv/RT-1 (K at 640x512 halves to 320x256).
        """
        s = np.diag([width / self.width, height / self.height, 1.0])
        return PinholeCamera(s @ self.K, self.world_from_camera, width, height)

    # ------------------------------------------------------------------ projection
    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera-frame points (..., 3)."""
        return transform_points(self.camera_from_world, points)

    def project_camera_points(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) with z > 0 -> pixels (..., 2). No check on z (callers clip)."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        u = self.K[0, 0] * p[..., 0] / z + self.K[0, 1] * p[..., 1] / z + self.K[0, 2]
        v = self.K[1, 1] * p[..., 1] / z + self.K[1, 2]
        return np.stack([u, v], axis=-1)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points. points: (..., 3) -> (uv (..., 2), depth (...,)).

        ``depth`` is the camera-frame z. Points with ``depth <= 0`` (at or behind the camera) get
        ``uv = NaN`` rather than a mirrored, meaningless pixel.
        """
        pc = self.to_camera(points)
        depth = pc[..., 2]
        front = depth > 0
        safe = np.where(front[..., None], pc, np.array([0.0, 0.0, 1.0]))
        uv = self.project_camera_points(safe)
        uv = np.where(front[..., None], uv, np.nan)
        return uv, depth

    def pybullet_view_projection(
        self, near: float = 0.01, far: float = 10.0
    ) -> tuple[list[float], list[float]]:
        """(view_matrix, projection_matrix), 16 floats each (column-major) for ``pybullet.getCameraImage``.

        ``getCameraImage(width, height, view, proj)`` then renders exactly the view ``project`` models
        (tests check that projected points land on the pixels pybullet draws, within 0.25 px):
        OpenGL looks down -z with y up, so the OpenCV frame is flipped about x, and K becomes an
        off-centre frustum. pybullet's TinyRenderer (the DIRECT-mode renderer) samples column ``i`` at
        x = i but flips rows as ``y_gl = H - row``, so ``cy`` shifts by one pixel and ``cx`` does not.
        """
        if not (0 < near < far):
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        flip = np.diag([1.0, -1.0, -1.0, 1.0])
        view = flip @ self.camera_from_world
        w, h = float(self.width), float(self.height)
        fx, fy, skew = self.K[0, 0], self.K[1, 1], self.K[0, 1]
        cx, cy = self.K[0, 2], self.K[1, 2] + 1.0  # TinyRenderer's row flip, see above
        proj = np.array(
            [
                [2 * fx / w, -2 * skew / w, 1 - 2 * cx / w, 0.0],
                [0.0, 2 * fy / h, 2 * cy / h - 1, 0.0],
                [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )
        return view.T.reshape(-1).tolist(), proj.T.reshape(-1).tolist()

    def __repr__(self) -> str:
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        return (
            f"PinholeCamera({self.width}x{self.height}, fx={fx:.1f}, fy={fy:.1f}, cx={cx:.1f}, "
            f"cy={cy:.1f}, xyz_rpy={np.round(self.xyz_rpy, 4).tolist()})"
        )
