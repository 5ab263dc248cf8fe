"""VAPVectorEnv: equals SyncVectorEnv over single envs (seeds, autoreset, infos); partial resets; bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.vector import AutoresetMode

from vap_env.vector_env import VAPVectorEnv

KW = {"num_inference_steps": 1}


def _assert_close_frames(a: np.ndarray, b: np.ndarray) -> None:
    # Batched matmuls round differently from per-item ones on the CPU; after uint8 quantisation
    # that flips a rare value by one level. Anything larger is a real difference.
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 2 and diff.mean() < 0.01, (diff.max(), diff.mean())


def _assert_same(a, b, path: str = "") -> None:
    """Equal structure and values; uint8 image arrays within the quantisation tolerance."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (path, a.keys(), b.keys())
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, tuple | list):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) and a.dtype == np.uint8:
        _assert_close_frames(a, b)
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert all(x == y for x, y in zip(a, b, strict=True)), path
    elif isinstance(a, np.ndarray):
        # proprio derives from the actions only, not from generated pixels: exactly equal
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def vec_and_sync():
    n = 3
    vec = gym.make_vec(
        "VAP-RT1-v0", num_envs=n, vectorization_mode="vector_entry_point", max_episode_steps=2, **KW
    )
    sync = gym.vector.SyncVectorEnv(
        [lambda: gym.make("VAP-RT1-v0", max_episode_steps=2, **KW) for _ in range(n)]
    )
    yield vec, sync
    vec.close()
    sync.close()


def test_vector_env_equals_sync_vector_env_of_single_envs(vec_and_sync, small_actions):
    vec, sync = vec_and_sync
    assert isinstance(vec, VAPVectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.action_space.shape == (3, 8, 7)
    assert vec.single_observation_space == sync.single_observation_space
    _assert_same(vec.reset(seed=7), sync.reset(seed=7))
    rng = np.random.default_rng(0)
    # Step 2 truncates every env (max_episode_steps=2); step 3 autoresets them (NEXT_STEP).
    for _ in range(4):
        actions = small_actions(vec.action_space, rng)
        out_vec, out_sync = vec.step(actions), sync.step(actions)
        _assert_same(out_vec, out_sync)
    assert out_vec[3].tolist() == [False] * 3


def test_partial_reset_per_env_options_and_autoreset(vec_and_sync, small_actions):
    vec, _ = vec_and_sync
    obs, _ = vec.reset(seed=0)
    robot = vec.core.robot
    mask = np.array([False, True, False])
    image = np.full((64, 80, 3), 17, np.uint8)
    state = {
        "image": image,
        "instruction": "close middle drawer",
        "joints": robot.home_q,
        "gripper": 1.0,
    }
    obs2, infos = vec.reset(options={"reset_mask": mask, "per_env": [None, state, None]})
    np.testing.assert_array_equal(infos["_instruction"], mask)
    assert infos["instruction"][1] == "close middle drawer"
    np.testing.assert_array_equal(obs2["image"][1], image)
    for i in (0, 2):  # untouched envs keep their observation
        np.testing.assert_array_equal(obs2["image"][i], obs["image"][i])
        np.testing.assert_array_equal(obs2["proprio"][i], obs["proprio"][i])

    # Truncate env 1 alone: reset the others later than it so their counters differ.
    rng = np.random.default_rng(1)
    vec.step(small_actions(vec.action_space, rng))
    vec.reset(options={"reset_mask": np.array([True, False, True])})
    _, _, _, truncated, _ = vec.step(small_actions(vec.action_space, rng))
    assert truncated.tolist() == [False, True, False]
    _, rewards, _, truncated, infos = vec.step(small_actions(vec.action_space, rng))
    # NEXT_STEP: env 1 was reset (its action ignored, no frames), the others stepped.
    assert infos["_frames"].tolist() == [True, False, True]
    assert infos["_instruction"].tolist() == [False, True, False]
    assert rewards[1] == 0.0 and truncated.tolist() == [True, False, True]


def test_vector_bad_input(small_actions):
    envs = VAPVectorEnv(num_envs=2, preset="rt1", **KW)
    try:
        with pytest.raises(ResetNeeded):
            envs.step(np.zeros((2, 8, 7), np.float32))
        envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"shape \(2, 8, 7\).*got \(3, 8, 7\)"):
            envs.step(np.zeros((3, 8, 7), np.float32))
        bad = np.zeros((2, 8, 7), np.float32)
        bad[1, 3, 2] = np.nan
        with pytest.raises(ValueError, match=r"actions\[1\] must be finite"):
            envs.step(bad)
        with pytest.raises(ValueError, match="reset_mask"):
            envs.reset(options={"reset_mask": np.array([1, 0])})
        with pytest.raises(ValueError, match="reset_mask"):
            envs.reset(options={"reset_mask": np.zeros(2, bool)})
        with pytest.raises(ValueError, match="per_env"):
            envs.reset(options={"per_env": [None]})
        with pytest.raises(ValueError, match="num_envs=2"):
            envs.reset(seed=[1, 2, 3])
        with pytest.raises(ValueError, match=r"seed must be an int.*got 1\.5"):
            envs.reset(seed=1.5)
        envs.reset(seed=range(2))  # any sequence of ints, as SyncVectorEnv takes
        with pytest.raises(ValueError, match=r"per_env'\] entries must be option dicts.*'int'"):
            envs.reset(options={"per_env": [None, 5]})
        ragged = [np.zeros((8, 7)), np.zeros((8, 6))]
        with pytest.raises(
            ValueError, match=r"actions must be a numeric array of shape \(2, 8, 7\)"
        ):
            envs.step(ragged)
    finally:
        envs.close()
    with pytest.raises(ValueError, match=r"num_envs must be an integer >= 1, got 2\.0"):
        VAPVectorEnv(num_envs=2.0, preset="rt1", **KW)


def test_disabled_autoreset_requires_explicit_reset(small_actions):
    envs = VAPVectorEnv(
        num_envs=2, preset="rt1", autoreset_mode="Disabled", max_episode_steps=1, **KW
    )
    try:
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        assert envs.step(small_actions(envs.action_space, rng))[3].all()
        with pytest.raises(ResetNeeded, match="autoreset is disabled"):
            envs.step(small_actions(envs.action_space, rng))
        envs.reset(options={"reset_mask": np.array([True, True])})
        envs.step(small_actions(envs.action_space, rng))
    finally:
        envs.close()
    with pytest.raises(ClosedEnvironmentError, match=r"envs.step\(\) after envs.close\(\)"):
        envs.step(small_actions(envs.action_space, rng))
    with pytest.raises(ClosedEnvironmentError, match=r"envs.reset\(\) after envs.close\(\)"):
        envs.reset(seed=0)


@pytest.mark.timeout(180)  # a child forked from a busy torch thread pool used to hang here
def test_async_vector_env_runs_with_the_default_fork(small_actions):
    # conftest pins OMP_NUM_THREADS=1, under which a fork never hangs: start a real pool
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.ones(256, 256) @ torch.ones(256, 256)  # the parent's thread pool has run
        envs = gym.make_vec("VAP-RT1-v0", num_envs=2, vectorization_mode="async", **KW)
    finally:
        torch.set_num_threads(threads)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["image"].shape == (2, 64, 80, 3)
        obs, rewards, terminated, truncated, infos = envs.step(
            small_actions(envs.action_space, np.random.default_rng(0))
        )
        assert infos["frames"].shape == (2, 8, 64, 80, 3)
        assert rewards.shape == (2,) and not terminated.any() and not truncated.any()
    finally:
        envs.close()
