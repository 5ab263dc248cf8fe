"""Fixtures of the env tests: real tiny envs (tiny world model, 1 denoising step, CPU)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import vap_env  # noqa: F401  (registers the env ids)

# One denoising step keeps a chunk fast; every code path is the same as with more steps.
FAST = {"num_inference_steps": 1}


@pytest.fixture
def make_env() -> Iterator[Callable[..., gym.Env]]:
    """``make_env(env_id="VAP-RT1-v0", **kwargs)`` -> a gym.make'd env, closed after the test."""
    envs: list[Any] = []

    def make(env_id: str = "VAP-RT1-v0", **kwargs: Any) -> gym.Env:
        env = gym.make(env_id, **{**FAST, **kwargs})
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture(scope="module")
def rt1_env() -> Iterator[gym.Env]:
    """A module-shared VAP-RT1-v0 (reset it before use)."""
    env = gym.make("VAP-RT1-v0", render_mode="rgb_array", **FAST)
    yield env
    env.close()


@pytest.fixture
def small_actions() -> Callable[..., np.ndarray]:
    """``small_actions(space, rng, scale=0.01)``: small zero-centred delta actions (IK stays converged)."""

    def sample(space: gym.spaces.Box, rng: np.random.Generator, scale: float = 0.01) -> np.ndarray:
        return (rng.uniform(-1, 1, space.shape) * scale * space.high).astype(np.float32)

    return sample
