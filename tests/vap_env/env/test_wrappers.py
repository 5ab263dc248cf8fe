"""Wrappers: single action -> chunk (repeat / spread), torch tensors at the edge."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from vap_env.wrappers import SingleActionWrapper, TorchVectorWrapper, TorchWrapper


def test_single_action_spread_reaches_the_action_once(make_env):
    env = SingleActionWrapper(make_env(), mode="spread")
    assert env.action_space.shape == (7,)
    obs, _ = env.reset(seed=0)
    action = np.array([0.02, -0.01, 0.015, 0.0, -0.05, -0.08, 0.4], np.float32)
    np.testing.assert_allclose(env.chunk(action), np.tile(action / 8, (8, 1)), rtol=1e-6)
    obs2, *_ = env.step(action)
    # The K deltas compose to exactly one application of the action.
    np.testing.assert_allclose(obs2["proprio"][7:10], obs["proprio"][7:10] + action[:3], atol=1e-3)
    assert obs2["proprio"][-1] == pytest.approx(min(1.0, obs["proprio"][-1] + 0.4), abs=1e-6)


def test_single_action_repeat_holds_the_action(make_env):
    env = SingleActionWrapper(make_env(), mode="repeat")
    env.reset(seed=0)
    action = np.array([0.005, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0], np.float32)
    np.testing.assert_array_equal(env.chunk(action), np.tile(action, (8, 1)))
    obs2, _, _, _, info = env.step(action)
    np.testing.assert_allclose(np.diff(info["proprio"][:, 7]), 0.005, atol=1e-3)
    assert obs2["proprio"][-1] == 0.0
    with pytest.raises(ValueError, match=r"shape \(7,\).*one control step"):
        env.step(np.zeros((8, 7), np.float32))
    with pytest.raises(ValueError, match="mode must be one of"):
        SingleActionWrapper(make_env(), mode="hold")


def test_wrappers_are_recorded_in_the_spec_and_pass_check_env(make_env):
    from gymnasium.utils.env_checker import check_env

    env = TorchWrapper(SingleActionWrapper(make_env(), mode="spread"))
    assert [w.name for w in env.spec.additional_wrappers] == ["SingleActionWrapper", "TorchWrapper"]
    assert env.spec.additional_wrappers[0].kwargs == {"mode": "spread"}
    again = gym.make(env.spec)  # rebuilt with its wrappers
    try:
        assert isinstance(again, TorchWrapper) and again.env.mode == "spread"
    finally:
        again.close()
    check_env(SingleActionWrapper(make_env(), mode="spread"), skip_render_check=True)


def test_single_action_spread_interpolates_absolute_targets(make_env):
    env = SingleActionWrapper(make_env(action_mode="joint_pos"), mode="spread")
    obs, _ = env.reset(seed=0)
    start = np.append(obs["proprio"][:7], obs["proprio"][-1]).astype(np.float64)
    target = start + np.array([0.08, -0.08, 0.04, 0.0, 0.0, 0.0, 0.16, 0.0])
    target[-1] = 0.8  # absolute gripper position
    chunk = env.chunk(target)
    np.testing.assert_allclose(chunk[0], start + (target - start) / 8, atol=1e-6)
    np.testing.assert_allclose(chunk[-1], target, atol=1e-6)
    obs2, *_ = env.step(target)
    np.testing.assert_allclose(obs2["proprio"][:7], target[:7], atol=1e-6)

    env = SingleActionWrapper(make_env(action_mode="ee_pos"), mode="spread")
    obs, _ = env.reset(seed=0)
    from kinematics.transforms import quat_to_matrix
    from vap_env.actions import matrix_to_rotvec

    p = obs["proprio"].astype(np.float64)
    target = np.concatenate(
        [p[7:10] + np.array([0.02, 0.0, 0.02]), matrix_to_rotvec(quat_to_matrix(p[10:14])), [0.5]]
    )
    chunk = env.chunk(target)
    np.testing.assert_allclose(
        chunk[3, :3], p[7:10] + np.array([0.02, 0.0, 0.02]) * 4 / 8, atol=1e-6
    )
    np.testing.assert_allclose(chunk[-1], target, atol=1e-6)


def test_single_action_is_checked_against_its_own_space(make_env):
    # A spread delta must not be divided into range, nor an absolute target clipped silently.
    for mode in ("spread", "repeat"):
        env = SingleActionWrapper(make_env(), mode=mode)
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r"action\[0\] = 1\.5 is outside.*clip_actions=True"):
            env.chunk(np.array([1.5, 0, 0, 0, 0, 0, 0]))
        with pytest.raises(ValueError, match="NaN/inf"):
            env.chunk(np.full(7, np.nan))
    env = SingleActionWrapper(make_env(action_mode="joint_pos"), mode="spread")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action\[7\] = 5 is outside"):
        env.chunk(np.append(np.zeros(7), 5.0))
    env = SingleActionWrapper(make_env(clip_actions=True), mode="spread")
    env.reset(seed=0)
    np.testing.assert_allclose(env.chunk(np.array([1.5, 0, 0, 0, 0, 0, 0]))[:, 0], 1.0 / 8)


def test_torch_wrapper(make_env, small_actions):
    env = TorchWrapper(make_env(info_timings=True))
    obs, info = env.reset(seed=0)
    assert isinstance(obs["image"], torch.Tensor) and obs["image"].dtype == torch.uint8
    assert isinstance(info["instruction"], str)
    start = obs["proprio"]
    action = small_actions(env.action_space, np.random.default_rng(0), scale=0.2)  # (8, 7)
    obs, reward, terminated, _, info = env.step(torch.from_numpy(action))
    assert isinstance(obs["proprio"], torch.Tensor) and obs["proprio"].shape == (15,)
    # the wrapper hands the env the action itself: the plain env, same seed and action, agrees
    plain = make_env()
    plain.reset(seed=0)
    plain_obs, plain_reward, *_, plain_info = plain.step(action)
    np.testing.assert_array_equal(obs["proprio"].numpy(), plain_obs["proprio"])
    np.testing.assert_array_equal(info["frames"].numpy(), plain_info["frames"])
    assert reward == plain_reward
    assert not torch.equal(obs["proprio"], start)  # the action moved the arm
    assert isinstance(info["frames"], torch.Tensor) and info["frames"].shape == (8, 64, 80, 3)
    assert set(info["timings"]) == {"kinematics", "world_model", "total"}
    assert isinstance(info["timings"]["total"], float)
    assert isinstance(reward, float) and isinstance(terminated, bool)
    # torch reset options (image) are converted back to NumPy for the env
    core = env.unwrapped.core
    options = {
        "image": torch.zeros(64, 80, 3, dtype=torch.uint8),
        "instruction": "pick coke can",
        "joints": torch.as_tensor(core.robot.home_q),
        "gripper": 0.0,
    }
    obs, _ = env.reset(options=options)
    assert obs["image"].sum() == 0


def test_torch_vector_wrapper():
    envs = TorchVectorWrapper(
        gym.make_vec(
            "VAP-RT1-v0", num_envs=2, vectorization_mode="vector_entry_point", num_inference_steps=1
        )
    )
    try:
        obs, infos = envs.reset(seed=0)
        assert obs["image"].shape == (2, 64, 80, 3) and isinstance(obs["image"], torch.Tensor)
        assert infos["instruction"].dtype == object  # strings stay strings
        obs, rewards, terminated, _, infos = envs.step(torch.zeros(2, 8, 7))
        assert isinstance(rewards, torch.Tensor) and rewards.shape == (2,)
        assert isinstance(terminated, torch.Tensor) and terminated.dtype == torch.bool
        assert infos["frames"].shape == (2, 8, 64, 80, 3)
    finally:
        envs.close()
