"""PinholeCamera: OpenCV projection, DROID extrinsics convention, resizing, pybullet view agreement."""

from __future__ import annotations

import cv2
import numpy as np
import pybullet as pb
import pytest

from kinematics import PinholeCamera

K = np.array([[200.0, 0.0, 150.3], [0.0, 190.0, 110.7], [0.0, 0.0, 1.0]])


def _camera(width: int = 320, height: int = 240, k: np.ndarray = K) -> PinholeCamera:
    return PinholeCamera.look_at((0.8, 0.5, 0.9), (0.0, 0.0, 0.2), k, width, height)


def test_projection_equals_cv2_project_points():
    cam = _camera()
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.3, 0.3, (50, 3)) + np.array([0.0, 0.0, 0.2])
    uv, depth = cam.project(pts)
    assert np.all(depth > 0)
    cfw = cam.camera_from_world
    rvec, _ = cv2.Rodrigues(cfw[:3, :3])
    ref, _ = cv2.projectPoints(pts, rvec, cfw[:3, 3], cam.K, None)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-9)
    # Batched leading axes are kept.
    uv2, depth2 = cam.project(pts.reshape(5, 10, 3))
    assert uv2.shape == (5, 10, 2) and depth2.shape == (5, 10)


def test_points_behind_camera_are_nan_not_mirrored():
    cam = PinholeCamera(K, np.eye(4), 320, 240)  # camera at the origin looking down +z
    uv, depth = cam.project(np.array([[0.1, 0.0, 1.0], [0.1, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    assert np.all(np.isfinite(uv[0])) and depth[0] == 1.0
    assert np.isnan(uv[1:]).all() and depth[1] == -1.0


def test_from_xyz_rpy_follows_droid_convention():
    # Zero angles: camera axes = base axes, so a point 1 m along base +z is on the optical axis.
    cam = PinholeCamera.from_xyz_rpy(np.array([0.1, 0.2, 0.3, 0.0, 0.0, 0.0]), K, 320, 240)
    uv, depth = cam.project(np.array([0.1, 0.2, 1.3]))
    np.testing.assert_allclose(uv, K[:2, 2])
    assert depth == pytest.approx(1.0)
    # Extrinsic "xyz" Euler: R = Rz(yaw) Ry(pitch) Rx(roll); yaw 90 deg maps camera x to base y.
    cam = PinholeCamera.from_xyz_rpy(np.array([0.0, 0.0, 0.0, 0.3, -0.4, np.pi / 2]), K, 320, 240)
    r = cam.world_from_camera[:3, :3]
    rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    ry = np.array([[np.cos(-0.4), 0, np.sin(-0.4)], [0, 1, 0], [-np.sin(-0.4), 0, np.cos(-0.4)]])
    rx = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    np.testing.assert_allclose(r, rz @ ry @ rx, atol=1e-12)
    np.testing.assert_allclose(cam.xyz_rpy, [0, 0, 0, 0.3, -0.4, np.pi / 2], atol=1e-12)


def test_look_at_centres_target_with_up_up():
    cam = _camera()
    uv, _ = cam.project(np.array([[0.0, 0.0, 0.2], [0.0, 0.0, 0.5]]))
    np.testing.assert_allclose(uv[0], K[:2, 2], atol=1e-9)
    assert uv[1, 1] < uv[0, 1]  # higher in the world = higher in the image (smaller v)


def test_resized_scales_intrinsics():
    cam = PinholeCamera(np.array([[425.0, 0, 320], [0, 425, 256], [0, 0, 1]]), np.eye(4), 640, 512)
    half = cam.resized(320, 256)
    np.testing.assert_allclose(half.K, [[212.5, 0, 160], [0, 212.5, 128], [0, 0, 1]])
    p = np.array([0.05, -0.02, 0.7])
    np.testing.assert_allclose(half.project(p)[0], cam.project(p)[0] / 2)


def test_bad_camera_inputs():
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        PinholeCamera(np.eye(2), np.eye(4), 10, 10)
    with pytest.raises(ValueError, match="rotation"):
        PinholeCamera(K, np.diag([1.0, 1.0, -1.0, 1.0]), 10, 10)
    with pytest.raises(ValueError, match="width"):
        PinholeCamera(K, np.eye(4), 0, 10)
    with pytest.raises(ValueError, match="6 finite"):
        PinholeCamera.from_xyz_rpy(np.zeros(5), K, 10, 10)


@pytest.mark.parametrize(
    ("width", "height", "k"),
    [
        (320, 240, K),
        (97, 61, np.array([[60.0, 0, 40.2], [0, 55.0, 33.1], [0, 0, 1]])),
        (320, 180, np.array([[130.0, 0, 160], [0, 130.0, 90], [0, 0, 1]])),
    ],
)
def test_pybullet_view_projection_draws_where_project_says(width, height, k):
    """Spheres rendered by getCameraImage have their pixel centroid where ``project`` puts the centre."""
    cam = _camera(width, height, k)
    pts = np.array([[0.0, 0.0, 0.2], [0.2, -0.1, 0.1], [-0.15, 0.2, 0.35], [0.1, 0.3, 0.0]])
    client = pb.connect(pb.DIRECT)
    try:
        shape = pb.createVisualShape(pb.GEOM_SPHERE, radius=0.03, physicsClientId=client)
        ids = [
            pb.createMultiBody(0, -1, shape, basePosition=p.tolist(), physicsClientId=client)
            for p in pts
        ]
        view, proj = cam.pybullet_view_projection()
        seg = pb.getCameraImage(
            width, height, view, proj, renderer=pb.ER_TINY_RENDERER, physicsClientId=client
        )[4]
    finally:
        pb.disconnect(client)
    seg = np.asarray(seg).reshape(height, width)
    uv, _ = cam.project(pts)
    for i, body in enumerate(ids):
        rows, cols = np.nonzero(seg == body)
        assert len(rows) >= 5
        # A sphere projects to a near-symmetric blob; its pixel centroid is within sampling noise.
        np.testing.assert_allclose([cols.mean(), rows.mean()], uv[i], atol=0.3)


_K_RESIZE = np.array([[200.0, 0.0, 150.0], [0.0, 190.0, 110.0], [0.0, 0.0, 1.0]])


def test_resized_scales_x_by_width_and_y_by_height():
    cam = PinholeCamera(_K_RESIZE, np.eye(4), 320, 240).resized(160, 60)  # x / 2, y / 4
    np.testing.assert_allclose(cam.K, [[100.0, 0, 75.0], [0, 47.5, 27.5], [0, 0, 1]])
