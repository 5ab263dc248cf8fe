"""stable-baselines3 on the native vector env: PPO("MultiInputPolicy") learns with batched world-model calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from vap_env.sb3_vec_env import SB3VecEnv
from vap_env.vector_env import VAPVectorEnv


def test_ppo_multi_input_policy_learns_on_the_batched_env():
    # joint_delta: Gaussian exploration saturates ee_delta's +-1 m bounds, where IK is slow; joint
    # increments need no IK. 8 envs: every PPO step is one world-model call for all of them.
    envs = VAPVectorEnv(
        num_envs=8,
        preset="rt1",
        autoreset_mode="SameStep",
        task="reach",
        action_mode="joint_delta",
        max_episode_steps=3,
        num_inference_steps=1,
        info_timings=False,
    )
    venv = SB3VecEnv(envs)
    model = PPO(
        "MultiInputPolicy", venv, n_steps=8, batch_size=32, n_epochs=1, seed=0, device="cpu"
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=192)
    assert model.num_timesteps >= 192
    after = list(model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # it updated
    # the rollout buffer holds the reach task's rewards (-distance to the goal), not zeros
    rewards = model.rollout_buffer.rewards
    assert (rewards < 0).all() and np.isfinite(rewards).all()
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (8, 8, 8)
    venv.close()


def test_sb3_vec_env_autoreset_and_infos():
    kwargs = dict(
        num_envs=2,
        preset="rt1",
        autoreset_mode="SameStep",
        task="reach",
        max_episode_steps=1,
        num_inference_steps=1,
    )
    envs = VAPVectorEnv(**kwargs)
    venv = SB3VecEnv(envs)
    action = np.zeros((2, 8, 7), np.float32)
    try:
        venv.seed(5)
        obs = venv.reset()
        assert obs["image"].shape == (2, 64, 80, 3)
        assert venv.reset_infos[0]["instruction"]
        obs, rewards, dones, infos = venv.step(action)
        assert dones.tolist() == [True, True] and rewards.dtype == np.float32
        # the reach task's reward of each env's step, as the vector env itself gives it
        distances = [info["distance"] for info in infos]
        np.testing.assert_allclose(rewards, -np.array(distances, np.float32))
        assert (rewards < 0).all()
        plain = VAPVectorEnv(**kwargs)
        try:
            plain.reset(seed=5)
            _, plain_rewards, *_ = plain.step(action)
        finally:
            plain.close()
        np.testing.assert_array_equal(rewards, plain_rewards.astype(np.float32))
        for i, info in enumerate(infos):
            # The step's own info plus SB3's terminal observation; obs is already the next episode's.
            assert info["frames"].shape == (8, 64, 80, 3)
            assert info["TimeLimit.truncated"] is True
            np.testing.assert_array_equal(info["terminal_observation"]["image"], info["frames"][-1])
            assert not np.array_equal(obs["image"][i], info["frames"][-1])
        assert venv.get_attr("chunk_frames") == [8, 8]
        assert venv.metadata["render_fps"] == envs.metadata["render_fps"]  # for VecVideoRecorder
        # SB3's per-env reset options: each env starts from its own frame and instruction
        rng = np.random.default_rng(0)
        starts = [
            {
                "image": rng.integers(0, 255, (64, 80, 3), dtype=np.uint8),
                "instruction": f"pick can {i}",
                "joints": np.asarray(envs.core.robot.home_q, np.float64),
                "gripper": 0.0,
            }
            for i in range(2)
        ]
        venv.set_options(starts)
        obs = venv.reset()
        assert [r["instruction"] for r in venv.reset_infos] == ["pick can 0", "pick can 1"]
        for i in range(2):
            np.testing.assert_array_equal(obs["image"][i], starts[i]["image"])
        venv.set_attr("render_mode", None)  # all envs: fine
        with pytest.raises(ValueError, match=r"set_attr\('render_mode'\) on envs \[1\]"):
            venv.set_attr("render_mode", None, indices=[1])
        with pytest.raises(ValueError, match="shared by all envs"):
            venv.env_method("render", indices=0)
    finally:
        venv.close()
    with pytest.raises(ValueError, match="SameStep"):
        SB3VecEnv(VAPVectorEnv(num_envs=1, preset="rt1", num_inference_steps=1))
