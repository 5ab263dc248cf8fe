"""The scripted policy on real synthetic scenes (pybullet, small render size)."""

from __future__ import annotations

import numpy as np
import pytest

from policies import make_policy
from policies.scripted import plan_skill
from vap_env.data.rotations import apply_ee_delta

T, K = 9, 4


@pytest.fixture(scope="module")
def start():
    from vap_env.data.synth import sample_start

    return sample_start("google_robot", seed=0, width=80, height=64)


def _proprio(q: np.ndarray, tcp: np.ndarray, gripper: float) -> np.ndarray:
    return np.concatenate([q, tcp, [gripper]]).astype(np.float32)


def test_plan_is_the_scenes_own_skill_trajectory(start):
    from vap_env.data.synth.scene import SceneSpec
    from vap_env.data.synth.scripted import execute
    from vap_env.data.synth.writer import scene_for

    plan = plan_skill(start.scene, T)
    assert plan.tcp.shape == (T, 7) and plan.gripper.shape == (T,)
    assert plan.instruction == start.instruction
    np.testing.assert_allclose(plan.tcp[0], start.tcp_pose, atol=1e-5)
    spec = SceneSpec.from_dict(start.scene)
    rollout = execute(scene_for(spec.robot), spec, T)
    # The renderer's logged TCP is FK of IK of the same targets: equal up to the IK residual.
    np.testing.assert_allclose(rollout.tcp_pose[:, :3], plan.tcp[:, :3], atol=5e-3)
    np.testing.assert_allclose(rollout.gripper_command, plan.gripper, atol=1e-6)


def test_noise_free_ee_delta_reproduces_the_plan_and_closes_the_loop(start):
    policy = make_policy("scripted", scene=start.scene, chunk_size=K, num_frames=T)
    policy.reset(start.instruction)
    plan = policy.tcp_plan
    q = np.zeros(7)
    chunks = [policy.act({"proprio": _proprio(q, start.tcp_pose, 0.0)})]
    # Between chunks, report a TCP 2 cm off the plan: the next chunk's first action corrects it.
    tcp, g = start.tcp_pose.astype(np.float64), 0.0
    for a in chunks[0]:
        tcp, g = apply_ee_delta(tcp, a[:6]), g + a[6]
    np.testing.assert_allclose(tcp[:3], plan[K, :3], atol=1e-6)
    np.testing.assert_allclose(g, policy.gripper_plan[K], atol=1e-6)
    off = tcp.copy()
    off[:3] += [0.02, 0.0, 0.0]
    second = policy.act({"proprio": _proprio(q, off, g)})
    np.testing.assert_allclose(second[0, :3], plan[K + 1, :3] - off[:3], atol=1e-6)
    assert second.shape == (K, 7) and second.dtype == np.float32
    # Past the plan's end it holds still.
    tail = policy.act({})
    np.testing.assert_allclose(tail[-1], 0.0, atol=1e-6)


def test_noise_is_seeded_and_spares_the_gripper(start):
    kw = dict(scene=start.scene, chunk_size=K, num_frames=T)
    clean = make_policy("scripted", **kw).act({})
    noisy = make_policy("scripted", noise_std=0.01, seed=1, **kw)
    a = noisy.act({})
    noisy.reset("", seed=1)
    np.testing.assert_array_equal(noisy.act({}), a)
    assert np.abs(a[:, :6] - clean[:, :6]).max() > 1e-3
    np.testing.assert_array_equal(a[:, 6], clean[:, 6])


def test_absolute_modes(start):
    ee = make_policy(
        "scripted", scene=start.scene, chunk_size=K, num_frames=T, action_mode="ee_pos"
    )
    a = ee.act({})
    np.testing.assert_allclose(a[:, :3], ee.tcp_plan[1 : K + 1, :3], atol=1e-6)
    np.testing.assert_allclose(a[:, 6], ee.gripper_plan[1 : K + 1], atol=1e-6)
    joints = make_policy(
        "scripted", scene=start.scene, chunk_size=K, num_frames=T, action_mode="joint_pos"
    )
    qa = joints.act({})
    assert qa.shape == (K, 8)
    from kinematics import load_robot

    robot = load_robot("google_robot")
    reached = np.stack([robot.ee_pose(q) for q in qa[:, :7].astype(np.float64)])
    np.testing.assert_allclose(reached[:, :3], joints.tcp_plan[1 : K + 1, :3], atol=5e-3)


def test_errors(start):
    policy = make_policy("scripted", scene=start.scene, chunk_size=K, num_frames=T)
    with pytest.raises(ValueError, match="was reset with 'pick nothing'"):
        policy.reset("pick nothing")
    no_task = {**start.scene, "task": {}}
    with pytest.raises(ValueError, match="has no task"):
        make_policy("scripted", scene=no_task, chunk_size=K)
    with pytest.raises(ValueError, match="action_mode"):
        make_policy("scripted", scene=start.scene, chunk_size=K, action_mode="joint_delta")


def test_default_action_mode_is_the_robots_env_preset(start):
    from vap_env.data.synth import sample_start

    rt1 = make_policy("scripted", scene=start.scene, chunk_size=K, num_frames=T)
    assert rt1.cfg.action_mode == "ee_delta" and rt1.act({}).shape == (K, 7)
    franka = sample_start("franka_panda", seed=0, width=80, height=64)
    droid = make_policy("scripted", scene=franka.scene, chunk_size=K, num_frames=T)
    # VAP-DROID-v0 takes joint_pos (7 joints + gripper); ee_delta would fail at env.step.
    assert droid.cfg.action_mode == "joint_pos" and droid.act({}).shape == (K, 8)
