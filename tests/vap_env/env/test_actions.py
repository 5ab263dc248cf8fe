"""Action modes: the chunk -> joint-trajectory maths on the real robot models, and chunk validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinematics import load_robot
from kinematics.transforms import matrix_to_quat, quat_to_matrix, rotation_angle_deg
from vap_env.actions import (
    ACTION_MODES,
    ActionLimits,
    make_action_mode,
    matrix_to_rotvec,
    rotvec_to_matrix,
    validate_chunk,
)


@pytest.fixture(scope="module")
def google_robot():
    robot = load_robot("google_robot")
    yield robot
    robot.close()


def test_rotvec_round_trip_and_composition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        v = axis * rng.uniform(0.0, math.pi - 1e-3)
        np.testing.assert_allclose(matrix_to_rotvec(rotvec_to_matrix(v)), v, atol=1e-9)
    # K rotations by d / K about a fixed axis compose to the rotation by d (SingleActionWrapper spread)
    d = np.array([0.3, -0.2, 0.5])
    step = rotvec_to_matrix(d / 8)
    np.testing.assert_allclose(np.linalg.matrix_power(step, 8), rotvec_to_matrix(d), atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(np.eye(3)), np.zeros(3))


def test_ee_delta_follows_rt1_convention(google_robot):
    """world_vector adds to the TCP position, R' = Rot(rotation_delta) @ R, gripper is relative."""
    mode = make_action_mode("ee_delta", google_robot, ActionLimits())
    q0 = google_robot.home_q.copy()
    actions = np.zeros((4, 7))
    actions[:, :3] = [0.01, -0.005, 0.008]
    actions[:, 3:6] = [0.01, -0.02, -0.04]  # away from the wrist limit: reachable
    actions[:, 6] = [0.4, 0.4, 0.4, -1.0]
    traj = mode.rollout(q0, 0.1, actions)
    # Expected TCP poses by composing the deltas from the start pose.
    pose = google_robot.ee_pose(q0)
    position, rotation = pose[:3].copy(), quat_to_matrix(pose[3:])
    reached = google_robot.ee_pose(traj.q)
    for k, a in enumerate(actions):
        position = position + a[:3]
        rotation = rotvec_to_matrix(a[3:6]) @ rotation
        assert np.linalg.norm(reached[k, :3] - position) < 1e-3
        assert rotation_angle_deg(reached[k, 3:], matrix_to_quat(rotation)) < 0.5
    np.testing.assert_allclose(traj.gripper, [0.5, 0.9, 1.0, 0.0])  # clip(g + a, 0, 1)
    assert traj.ik_pos_err_m.max() < 1e-3
    assert np.all(traj.q >= google_robot.lower) and np.all(traj.q <= google_robot.upper)


def test_ee_pos_reaches_absolute_targets(google_robot):
    mode = make_action_mode("ee_pos", google_robot, ActionLimits())
    pose = google_robot.ee_pose(google_robot.home_q)
    rotvec = matrix_to_rotvec(rotvec_to_matrix([0.0, 0.0, 0.1]) @ quat_to_matrix(pose[3:]))
    target = np.concatenate([pose[:3] + np.array([0.03, 0.02, -0.02]), rotvec, [0.7]])
    traj = mode.rollout(google_robot.home_q.copy(), 0.0, np.tile(target, (2, 1)))
    reached = google_robot.ee_pose(traj.q[-1])
    assert np.linalg.norm(reached[:3] - target[:3]) < 1e-3
    assert rotation_angle_deg(reached[3:], matrix_to_quat(rotvec_to_matrix(rotvec))) < 0.5
    np.testing.assert_allclose(traj.gripper, [0.7, 0.7])


def test_unreachable_target_stays_within_limits_and_reports_residual(google_robot):
    mode = make_action_mode("ee_delta", google_robot, ActionLimits())
    traj = mode.rollout(google_robot.home_q.copy(), 0.0, np.array([[1.0, 1.0, 1.0, 0, 0, 0, 0]]))
    assert traj.ik_pos_err_m[0] > 0.1
    assert np.all(traj.q >= google_robot.lower) and np.all(traj.q <= google_robot.upper)


def test_joint_modes(google_robot):
    lower, upper = google_robot.lower, google_robot.upper
    delta = make_action_mode("joint_delta", google_robot, ActionLimits(max_joint_delta=0.25))
    low, high = delta.bounds()
    np.testing.assert_allclose(high, [0.25] * 7 + [1.0])
    np.testing.assert_allclose(low, -high)
    q0 = upper - 0.1  # near the upper limits: increments stop there
    traj = delta.rollout(q0, 0.9, np.tile([0.25] * 7 + [0.2], (3, 1)))
    np.testing.assert_allclose(traj.q[0], np.minimum(q0 + 0.25, upper))
    np.testing.assert_allclose(traj.q[-1], upper)
    np.testing.assert_allclose(traj.gripper, [1.0, 1.0, 1.0])

    pos = make_action_mode("joint_pos", google_robot, ActionLimits())
    low, high = pos.bounds()
    np.testing.assert_allclose(low, np.append(lower, 0.0))
    np.testing.assert_allclose(high, np.append(upper, 1.0))
    target = np.append((lower + upper) / 2, 0.25)
    traj = pos.rollout(google_robot.home_q, 0.0, np.tile(target, (2, 1)))
    np.testing.assert_allclose(traj.q[-1], target[:7])
    np.testing.assert_allclose(traj.gripper, [0.25, 0.25])


def test_every_mode_has_a_gripper_channel(google_robot):
    dims = {name: make_action_mode(name, google_robot, ActionLimits()).dim for name in ACTION_MODES}
    assert dims == {"joint_pos": 8, "joint_delta": 8, "ee_delta": 7, "ee_pos": 7}


def test_unknown_action_mode_names_choices(google_robot):
    with pytest.raises(ValueError, match="ee_delta"):
        make_action_mode("ee_detla", google_robot, ActionLimits())


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.zeros((8, 6)), r"shape \(8, 7\).*got \(8, 6\)"),
        (np.zeros((7,)), r"shape \(8, 7\).*got \(7,\)"),
        (np.full((8, 7), np.nan), "NaN/inf"),
        (np.full((8, 7), np.inf), "NaN/inf"),
        (np.full((8, 7), 2.0), r"outside the action space \[-1, 1\].*clip_actions=True"),
        ("left", "numeric array"),
        (np.full((8, 7), "0.0"), r"numeric array.*dtype <U3"),
        (np.zeros((8, 7), bool), "numeric array.*dtype bool"),
        (np.zeros((8, 7), complex), "numeric array.*dtype complex128"),
        ([[0.0] * 7] * 7 + [[0.0] * 6], "numeric array"),  # ragged
    ],
)
def test_validate_chunk_rejects_bad_actions(action, match):
    low, high = -np.ones((8, 7)), np.ones((8, 7))
    with pytest.raises(ValueError, match=match):
        validate_chunk(action, low, high, clip=False)


@pytest.mark.parametrize("value", [-1.01, 1.01])
def test_validate_chunk_refuses_a_single_value_past_either_bound(value):
    low, high = -np.ones((8, 7)), np.ones((8, 7))
    chunk = np.zeros((8, 7))
    chunk[3, 5] = value
    with pytest.raises(
        ValueError,
        match=rf"action\[3, 5\] = {value} is outside the action space \[-1, 1\] \(1 value",
    ):
        validate_chunk(chunk, low, high, clip=False)
    chunk[3, 5] = np.sign(value)  # on the bound: fine
    np.testing.assert_array_equal(validate_chunk(chunk, low, high, clip=False), chunk)


def test_validate_chunk_clips_when_asked():
    low, high = -np.ones((2, 3)), np.ones((2, 3))
    out = validate_chunk(np.full((2, 3), 5.0), low, high, clip=True)
    np.testing.assert_array_equal(out, high)
    # NaN is an error even with clipping: there is no value to clip to.
    with pytest.raises(ValueError, match="NaN"):
        validate_chunk(np.full((2, 3), np.nan), low, high, clip=True)
    # float32 rounding of the bounds is tolerated
    edge = np.float32(0.1) * np.ones((2, 3))
    validate_chunk(edge, low * 0.1, high * 0.1, clip=False)


def test_zero_ee_delta_keeps_a_redundant_arm_where_it_is():
    robot = load_robot("google_robot", geometry=False)
    try:
        mode = make_action_mode("ee_delta", robot, ActionLimits())
        # a configuration away from home: the 7-joint arm reaches its TCP pose with many q
        q0 = np.clip(
            robot.home_q + np.array([0.4, -0.3, 0.5, 0.3, -0.4, 0.3, 0.5]),
            robot.lower,
            robot.upper,
        )
        traj = mode.rollout(q0, 0.0, np.zeros((4, 7)))
        np.testing.assert_allclose(traj.q, np.tile(q0, (4, 1)), atol=1e-3)
    finally:
        robot.close()
