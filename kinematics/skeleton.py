"""Skeleton rasteriser: 3D keypoints + edges -> the visual action prompt video (T, H, W, 3) uint8.

Black background; each part (arm, palm, left finger, right finger...) has the fixed RGB colour of the
spec; anti-aliased OpenCV lines (``cv2.LINE_AA``) whose thickness, and joint dots whose radius, scale
with the image size. Edges and dots are painted far-to-near (painter's algorithm on camera depth), so
a finger in front of the arm stays on top. Edges crossing the camera's near plane are clipped to it in
camera space before projection; points behind the camera are never projected (no mirrored garbage).
Non-finite keypoints (e.g. the arm in ``RobotModel.gripper_keypoints``) are treated as invisible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from kinematics.camera import PinholeCamera
from kinematics.spec import KeypointSpec

# cv2 drawing uses fixed-point coordinates with this many fractional bits (sub-pixel accuracy).
_SHIFT = 4
_SCALE = float(1 << _SHIFT)


@dataclass(frozen=True)
class SkeletonStyle:
    """Line and dot sizes, as fractions of the image's shorter side (so they scale with resolution)."""

    line_frac: float = field(
        default=3.0 / 256.0, metadata={"help": "line thickness / min(H, W); 3 px at 256"}
    )
    dot_frac: float = field(
        default=3.0 / 256.0, metadata={"help": "joint-dot radius / min(H, W); 3 px at 256"}
    )
    near: float = field(default=0.01, metadata={"help": "near clipping plane (m, camera z)"})


class SkeletonRenderer:
    """Draws a spec's skeleton for a camera.

    Args:
        spec: keypoints, edges and part colours (``KeypointSpec``).
        width: output image width (pixels).
        height: output image height (pixels).
        style: sizes and near plane; defaults scale with ``min(width, height)``.
    """

    def __init__(
        self, spec: KeypointSpec, width: int, height: int, style: SkeletonStyle | None = None
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"image size {width}x{height} must be positive")
        self.spec = spec
        self.width, self.height = int(width), int(height)
        self.style = style or SkeletonStyle()
        short = min(self.width, self.height)
        self.thickness = max(1, round(self.style.line_frac * short))
        self.radius = max(1, round(self.style.dot_frac * short))
        parts = spec.parts
        self._edges = np.array(spec.edge_index, dtype=np.int64).reshape(-1, 2)  # (E, 2)
        self._edge_colour = [tuple(int(c) for c in parts[e.part]) for e in spec.edges]
        self._dot_colour = [tuple(int(c) for c in parts[k.part]) for k in spec.keypoints]

    def _check(
        self, points: np.ndarray, camera: PinholeCamera, visible: np.ndarray | None
    ) -> tuple:
        pts = np.asarray(points, dtype=np.float64)
        p = self.spec.num_keypoints
        if pts.ndim != 3 or pts.shape[1:] != (p, 3):
            raise ValueError(
                f"points have shape {pts.shape}; expected (T, {p}, 3) for spec {self.spec.name!r}"
            )
        if (camera.width, camera.height) != (self.width, self.height):
            raise ValueError(
                f"camera is {camera.width}x{camera.height} but the renderer draws "
                f"{self.width}x{self.height}; pass camera.resized({self.width}, {self.height})"
            )
        vis = np.all(np.isfinite(pts), axis=-1)  # (T, P)
        if visible is not None:
            v = np.asarray(visible, dtype=bool)
            if v.shape not in ((p,), (pts.shape[0], p)):
                raise ValueError(f"visible has shape {v.shape}; expected ({p},) or (T, {p})")
            vis &= v
        return np.where(vis[..., None], pts, 0.0), vis

    def render(
        self, points: np.ndarray, camera: PinholeCamera, visible: np.ndarray | None = None
    ) -> np.ndarray:
        """Render keypoints. points: (T, P, 3) base frame; visible: (P,) or (T, P) bool -> (T, H, W, 3) uint8 RGB."""
        pts, vis = self._check(points, camera, visible)
        t_len = pts.shape[0]
        near = self.style.near
        pc = camera.to_camera(pts)  # (T, P, 3)

        # Edges: clip each segment to z >= near in camera space, then project both ends.
        a, b = pc[:, self._edges[:, 0]], pc[:, self._edges[:, 1]]  # (T, E, 3)
        edge_ok = vis[:, self._edges[:, 0]] & vis[:, self._edges[:, 1]]
        za, zb = a[..., 2], b[..., 2]
        edge_ok &= (za >= near) | (zb >= near)
        denom = np.where(np.abs(zb - za) < 1e-12, 1.0, zb - za)
        s = np.clip((near - za) / denom, 0.0, 1.0)[..., None]
        cut = a + s * (b - a)  # the point on the segment at z = near
        a = np.where((za < near)[..., None], cut, a)
        b = np.where((zb < near)[..., None], cut, b)
        a[..., 2] = np.maximum(a[..., 2], near)
        b[..., 2] = np.maximum(b[..., 2], near)
        ua = np.rint(camera.project_camera_points(a) * _SCALE).astype(np.int64)  # (T, E, 2)
        ub = np.rint(camera.project_camera_points(b) * _SCALE).astype(np.int64)
        edge_depth = 0.5 * (a[..., 2] + b[..., 2])  # (T, E)

        dot_ok = vis & (pc[..., 2] >= near)
        dots = np.rint(
            camera.project_camera_points(np.where(dot_ok[..., None], pc, 1.0)) * _SCALE
        ).astype(np.int64)  # (T, P, 2)
        # cv2 takes int32 coordinates; after near clipping values are bounded by f * extent / near,
        # but clamp anyway so a pathological camera cannot overflow.
        lim = 1 << 28
        ua, ub, dots = (np.clip(x, -lim, lim) for x in (ua, ub, dots))

        n_e = len(self._edges)
        depth = np.concatenate([edge_depth, pc[..., 2]], axis=1)  # (T, E + P)
        ok = np.concatenate([edge_ok, dot_ok], axis=1)
        order = np.argsort(-depth, axis=1, kind="stable")
        out = np.zeros((t_len, self.height, self.width, 3), dtype=np.uint8)
        th, rad = self.thickness, self.radius
        for t in range(t_len):
            img = out[t]
            ua_t, ub_t, dots_t = ua[t].tolist(), ub[t].tolist(), dots[t].tolist()
            ok_t = ok[t]
            for k in order[t].tolist():
                if not ok_t[k]:
                    continue
                if k < n_e:
                    cv2.line(img, ua_t[k], ub_t[k], self._edge_colour[k], th, cv2.LINE_AA, _SHIFT)
                else:
                    j = k - n_e
                    cv2.circle(
                        img, dots_t[j], rad << _SHIFT, self._dot_colour[j], -1, cv2.LINE_AA, _SHIFT
                    )
        return out
