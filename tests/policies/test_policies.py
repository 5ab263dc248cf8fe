"""Tests of the policy registry and the random, replay and single_action policies."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium import spaces

from policies import Policy, available_policies, make_policy, policy_class
from policies.random_policy import RandomPolicyConfig
from policies.replay import ReplayPolicy, ReplayPolicyConfig

K, D = 4, 7
SPACE = spaces.Box(-1.0, 1.0, (K, D), np.float32)
OBS = {"image": np.zeros((8, 8, 3), np.uint8), "proprio": np.zeros(15, np.float32)}


def test_registry_lists_and_imports_every_policy():
    assert available_policies() == ["random", "replay", "sb3", "scripted", "single_action"]
    for name in ("random", "replay", "scripted", "single_action"):
        assert hasattr(policy_class(name), "config_class")
    with pytest.raises(KeyError, match="Did you mean 'replay'"):
        make_policy("replai")
    with pytest.raises(KeyError, match="Did you mean 'seed'"):
        make_policy("random", action_space=SPACE, sed=1)
    with pytest.raises(ValueError, match="not both"):
        make_policy("random", action_space=SPACE, cfg=RandomPolicyConfig(), seed=1)


def test_random_policy_is_seeded_in_bounds_and_leaves_env_space_alone():
    p = make_policy("random", action_space=SPACE, seed=3)
    assert isinstance(p, Policy)
    a = p.act(OBS)
    assert a.shape == (K, D) and a.dtype == np.float32
    assert SPACE.contains(a)
    p.reset("pick coke can", seed=3)
    np.testing.assert_array_equal(p.act(OBS), a)
    assert not np.array_equal(p.act(OBS), a)  # the stream continues without a new seed
    q = make_policy("random", action_space=SPACE, seed=4)
    assert not np.array_equal(q.act(OBS), a)
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        make_policy("random", action_space=spaces.Box(-1, 1, (D,)))


def _episode(t: int, mode: str) -> SimpleNamespace:
    actions = np.arange(t * 2, dtype=np.float32).reshape(t, 2)
    return SimpleNamespace(actions=actions, action_mode=mode, episode_id="train_000007")


def test_replay_chunks_pads_by_action_mode_and_stops():
    ep = _episode(11, "ee_delta")  # 10 usable actions -> chunks of 4: 4 + 4 + 2 (+2 padded)
    p = make_policy("replay", episode=ep, chunk_size=4)
    assert (p.num_chunks, p.num_padded) == (3, 2)
    chunks = [p.act(OBS) for _ in range(3)]
    np.testing.assert_array_equal(np.concatenate(chunks)[:10], ep.actions[:10])
    np.testing.assert_array_equal(chunks[-1][2:], 0.0)  # delta mode: hold still with zeros
    assert p.done
    with pytest.raises(RuntimeError, match=r"train_000007.*exhausted after 3 chunks"):
        p.act(OBS)
    p.reset("")
    np.testing.assert_array_equal(p.act(OBS), chunks[0])

    absolute = ReplayPolicy(_episode(11, "joint_pos"), ReplayPolicyConfig(chunk_size=4))
    last = [absolute.act(OBS) for _ in range(3)][-1]
    np.testing.assert_array_equal(last[2:], np.repeat(last[1:2], 2, axis=0))  # hold the target

    keep = make_policy("replay", episode=ep, chunk_size=11, drop_last=False)
    np.testing.assert_array_equal(keep.act(OBS), ep.actions)
    with pytest.raises(ValueError, match="pad='zeros'"):
        make_policy("replay", episode=SimpleNamespace(actions=ep.actions), chunk_size=4)
    with pytest.raises(ValueError, match="chunk_size"):
        make_policy("replay", episode=ep, chunk_size=0)


class _Counter:
    """A single-action Policy that returns [n, -n] on its n-th call (n from 1)."""

    def __init__(self) -> None:
        self.calls = 0
        self.instruction = None

    def reset(self, instruction: str, seed: int | None = None) -> None:
        self.calls, self.instruction = 0, instruction

    def act(self, observation):
        self.calls += 1
        return np.array([self.calls, -self.calls], np.float32)


def test_single_action_repeat_and_requery():
    inner = _Counter()
    rep = make_policy("single_action", inner=inner, chunk_size=4)
    rep.reset("open top drawer")
    assert inner.instruction == "open top drawer"
    np.testing.assert_array_equal(rep.act(OBS), [[1, -1]] * 4)
    assert inner.calls == 1

    inner2 = _Counter()
    req = make_policy("single_action", inner=inner2, chunk_size=4, mode="requery")
    np.testing.assert_array_equal(req.act(OBS), [[1, -1], [2, -2], [3, -3], [4, -4]])
    assert inner2.calls == 4

    # A plain callable, and a (1, D) answer, are accepted.
    fn = make_policy("single_action", inner=lambda obs: np.ones((1, 3)), chunk_size=2)
    np.testing.assert_array_equal(fn.act(OBS), np.ones((2, 3)))
    bad = make_policy("single_action", inner=lambda obs: np.ones((2, 3)), chunk_size=2)
    with pytest.raises(ValueError, match=r"one action \(D,\)"):
        bad.act(OBS)
    with pytest.raises(ValueError, match="mode"):
        make_policy("single_action", inner=inner, chunk_size=2, mode="hold")
