"""SB3 adapter round trip: build (don't train) a real PPO on a tiny env shaped like vap-env, save,
load through the adapter, compare predictions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from policies import make_policy

K, D, J = 4, 7, 7


class _TinyVAPLikeEnv(gym.Env):
    """Observation and action spaces shaped like VAPEnv's (small images); never stepped."""

    def __init__(self) -> None:
        image = spaces.Box(0, 255, (36, 36, 3), np.uint8)  # NatureCNN needs >= 36x36
        self.observation_space = spaces.Dict(
            {
                "image": image,
                "skeleton": image,
                "proprio": spaces.Box(-3.0, 3.0, (J + 8,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (K, D), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.fixture(scope="module")
def saved_ppo(tmp_path_factory):
    from stable_baselines3 import PPO

    env = _TinyVAPLikeEnv()
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu")
    path = tmp_path_factory.mktemp("sb3") / "ppo.zip"
    model.save(path)
    return model, path, env


def test_sb3_round_trip_predictions_equal(saved_ppo):
    model, path, env = saved_ppo
    policy = make_policy("sb3", path=str(path), algo="ppo")
    policy.reset("pick coke can")
    env.observation_space.seed(1)
    for _ in range(3):
        obs = env.observation_space.sample()
        chunk = policy.act({**obs, "instruction": "ignored extra key"})
        expected, _ = model.predict(obs, deterministic=True)
        assert chunk.shape == (K, D) and chunk.dtype == np.float32
        np.testing.assert_allclose(chunk, expected, rtol=0, atol=1e-6)


def test_sb3_stochastic_is_seeded(saved_ppo):
    _, path, env = saved_ppo
    policy = make_policy("sb3", path=str(path), deterministic=False)
    obs = env.observation_space.sample()
    policy.reset("", seed=5)
    a = [policy.act(obs) for _ in range(2)]
    policy.reset("", seed=5)
    b = [policy.act(obs) for _ in range(2)]
    np.testing.assert_array_equal(a[0], b[0])
    # The seed is the policy's own: the process-wide generators go on as they were.
    import torch

    # (SB3's set_random_seed seeds NumPy's legacy global generator: that is what is checked.)
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected = (torch.rand(3), np.random.rand(3))  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    policy.reset("", seed=7)
    policy.act(obs)
    np.testing.assert_array_equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])  # noqa: NPY002
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])


def test_sb3_errors(saved_ppo, tmp_path):
    _, path, env = saved_ppo
    with pytest.raises(FileNotFoundError, match=r"absent\.zip"):
        make_policy("sb3", path=str(tmp_path / "absent.zip"))
    with pytest.raises(KeyError, match="Did you mean 'ppo'"):
        make_policy("sb3", path=str(path), algo="ppp")
    policy = make_policy("sb3", path=str(path))
    with pytest.raises(KeyError, match="missing \\['skeleton'\\]"):
        obs = env.observation_space.sample()
        del obs["skeleton"]
        policy.act(obs)
