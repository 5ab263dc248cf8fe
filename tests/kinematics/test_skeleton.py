"""SkeletonRenderer: golden image, gripper open vs closed, near-plane clipping, scaling, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from kinematics import (
    Edge,
    EEFrame,
    Keypoint,
    KeypointSpec,
    PinholeCamera,
    SkeletonRenderer,
    load_robot,
)

GOLDEN = Path(__file__).parent / "data" / "google_robot_skeleton_320x256.png"
# A pose with the gripper in view and the upper arm leaving the image (exercises 2D clipping).
GOLDEN_Q = np.array([-0.1494, 0.3673, 0.5409, 1.3327, -0.1626, 1.1661, -0.9452])
GOLDEN_GRIPPER = 0.4


@pytest.fixture(scope="module")
def google():
    robot = load_robot("google_robot", geometry=False)
    yield robot
    robot.close()


def _render(robot, q, gripper, width=320, height=256):
    cam = robot.default_camera(width, height)
    points = robot.keypoints(np.atleast_2d(q), np.atleast_1d(gripper))
    return SkeletonRenderer(robot.spec, width, height).render(points, cam)


def _dominant(img: np.ndarray, channel: int) -> int:
    """Pixels whose ``channel`` clearly dominates (a part colour, possibly anti-aliased)."""
    c = img.astype(int)
    others = [i for i in range(3) if i != channel]
    return int(
        np.sum((c[..., channel] > 60) & np.all(c[..., channel, None] > c[..., others] + 40, -1))
    )


def test_golden_image(google, tmp_path):
    frame = _render(google, GOLDEN_Q, GOLDEN_GRIPPER)[0]
    assert frame.shape == (256, 320, 3) and frame.dtype == np.uint8
    if os.environ.get("VAP_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(GOLDEN), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    golden = cv2.cvtColor(cv2.imread(str(GOLDEN)), cv2.COLOR_BGR2RGB)
    diff = np.abs(frame.astype(int) - golden.astype(int))
    if diff.mean() > 0.5 or (diff.max(-1) > 48).mean() > 0.002:
        cv2.imwrite(str(tmp_path / "rendered.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        pytest.fail(
            f"skeleton differs from {GOLDEN.name}: mean |diff| {diff.mean():.3f}, "
            f"{(diff.max(-1) > 48).mean():.4%} pixels off; rendered image in {tmp_path} "
            "(regenerate with VAP_UPDATE_GOLDEN=1 if the change is intended)"
        )
    # The golden frame is not trivially black: every part is drawn.
    assert _dominant(golden, 2) > 100  # arm (blue)
    assert _dominant(golden, 1) > 20  # right finger (green)


def test_render_is_deterministic_and_batched(google):
    q = np.stack([GOLDEN_Q, google.home_q])
    a = _render(google, q, np.array([GOLDEN_GRIPPER, 0.0]))
    b = _render(google, q, np.array([GOLDEN_GRIPPER, 0.0]))
    assert a.shape == (2, 256, 320, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], _render(google, GOLDEN_Q, GOLDEN_GRIPPER)[0])


def test_open_and_closed_gripper_look_different(google):
    open_, closed = _render(google, np.stack([GOLDEN_Q] * 2), np.array([0.0, 1.0]))
    changed = np.any(open_ != closed, axis=-1)
    assert changed.sum() > 150
    # The arm does not move with the gripper value: blue (arm) pixels far from the hand are equal.
    arm_only = (open_[..., 2] > 200) & (open_[..., 0] < 30)
    assert np.array_equal(open_[arm_only], closed[arm_only]) or changed[arm_only].mean() < 0.1


def test_gripper_only_path_draws_no_arm(google):
    cam = google.default_camera()
    tcp = google.ee_pose(GOLDEN_Q)[None]
    pts = google.gripper_keypoints(tcp, np.array([GOLDEN_GRIPPER]))
    img = SkeletonRenderer(google.spec, 320, 256).render(pts, cam)[0]
    full = _render(google, GOLDEN_Q, GOLDEN_GRIPPER)[0]
    assert _dominant(img, 2) == 0  # no arm (blue) pixels
    assert _dominant(full, 2) > 100
    assert np.count_nonzero(img.any(-1)) > 100  # the gripper is drawn


def test_thickness_scales_with_resolution(google):
    small = SkeletonRenderer(google.spec, 320, 256)
    large = SkeletonRenderer(google.spec, 640, 512)
    assert large.thickness == 2 * small.thickness and large.radius == 2 * small.radius
    n_small = np.count_nonzero(_render(google, GOLDEN_Q, 0.0).any(-1))
    n_large = np.count_nonzero(_render(google, GOLDEN_Q, 0.0, 640, 512).any(-1))
    # Doubling length and width scales the core area ~4x; the fixed 1-px anti-aliasing fringe less.
    assert 2.5 < n_large / n_small < 4.5


def _line_spec() -> KeypointSpec:
    """Two keypoints joined by one white edge (the renderer needs no URDF)."""
    return KeypointSpec(
        name="line",
        urdf="unused.urdf",
        arm_joints=(),
        home=(),
        ee=EEFrame(name="l", link="l"),
        parts={"arm": (255, 255, 255)},
        keypoints=(Keypoint("a", "l", "arm"), Keypoint("b", "l", "arm")),
        edges=(Edge("a", "b", "arm"),),
    )


def test_edges_crossing_behind_camera_are_clipped_not_mirrored():
    spec = _line_spec()
    k = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    cam = PinholeCamera(k, np.eye(4), 160, 120)  # at the origin, looking down +z
    ren = SkeletonRenderer(spec, 160, 120)
    # From 1 m in front (image centre) to 1 m behind and to the right (+x). Projected naively, the
    # rear end would land at u = 80 - 50 (left); the visible part of the segment runs right.
    pts = np.array([[[0.0, 0.0, 1.0], [0.5, 0.0, -1.0]]])
    img = ren.render(pts, cam)[0]
    lit = np.nonzero(img[60].max(-1) > 0)[0]
    assert lit.min() >= 80 - ren.radius - 1  # nothing left of the front end (beyond its dot)
    assert lit.max() == 159  # clipped segment leaves the image on the right
    # Fully behind the camera: nothing drawn.
    behind = ren.render(np.array([[[0.0, 0.0, -1.0], [0.5, 0.0, -2.0]]]), cam)[0]
    assert not behind.any()
    # NaN keypoints and `visible=False` hide the point and its edges.
    assert not ren.render(
        np.array([[[np.nan] * 3, [0.0, 0.0, 1.0]]]), cam, visible=[True, False]
    ).any()


def test_renderer_bad_inputs(google):
    ren = SkeletonRenderer(google.spec, 320, 256)
    cam = google.default_camera()
    with pytest.raises(ValueError, match=r"\(T, 13, 3\)"):
        ren.render(np.zeros((2, 5, 3)), cam)
    with pytest.raises(ValueError, match=r"resized\(320, 256\)"):
        ren.render(np.zeros((1, 13, 3)), google.default_camera(640, 512))
    with pytest.raises(ValueError, match="visible"):
        ren.render(np.zeros((1, 13, 3)), cam, visible=np.ones(3, bool))


def test_nearer_edge_is_painted_over_the_farther_one():
    spec = KeypointSpec(
        name="cross",
        urdf="unused.urdf",
        arm_joints=(),
        home=(),
        ee=EEFrame(name="l", link="l"),
        parts={"near": (255, 0, 0), "far": (0, 0, 255)},
        keypoints=(
            Keypoint("a", "l", "near"),
            Keypoint("b", "l", "near"),
            Keypoint("c", "l", "far"),
            Keypoint("d", "l", "far"),
        ),
        # the far edge is listed last so drawing in spec order would also leave it on top
        edges=(Edge("a", "b", "near"), Edge("c", "d", "far")),
    )
    cam = PinholeCamera(np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]]), np.eye(4), 160, 120)
    # a horizontal edge at z = 1 m and a vertical one at z = 2 m, crossing at the image centre
    pts = np.array([[[-0.5, 0, 1.0], [0.5, 0, 1.0], [0, -1.0, 2.0], [0, 1.0, 2.0]]])
    img = SkeletonRenderer(spec, 160, 120).render(pts, cam)[0]
    r, _, b = (int(c) for c in img[60, 80])
    assert r > 200 and b < 60, (r, b)  # near (red) on top at the crossing
    assert img[30, 80, 2] > 200  # the far (blue) edge is drawn elsewhere
