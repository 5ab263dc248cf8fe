"""The ``Policy`` protocol every vap-env policy follows, and the chunk check they share.

A policy is reset with the episode's instruction (and optionally a seed) and then maps one
observation to one *action chunk*: the K actions of the next env step, shape (K, D) float32, in the
env's action mode (``vap_env.actions``). The observation is the env's (a dict with ``"image"``
(H, W, 3) uint8, ``"skeleton"`` (H, W, 3) uint8, ``"proprio"`` (J + 8,) float32
[joints, tcp_pose (7), gripper]); policies that need less simply ignore the rest.

```python
policy = make_policy("random", action_space=env.action_space, seed=0)
obs, info = env.reset(seed=0)
policy.reset(info.get("instruction", ""), seed=0)
obs, reward, terminated, truncated, info = env.step(policy.act(obs))
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Maps an observation to an action chunk (K, D)."""

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Start a new episode with this instruction; a seed makes a stochastic policy repeatable."""
        ...

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next action chunk, (K, D) float32."""
        ...


def as_chunk(action: Any, *, where: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Check that ``action`` is a finite (K, D) array and return it as float32.

    Args:
        action: array-like (K, D).
        where: who produced it, for the error message (e.g. ``"sb3 policy"``).
        shape: the exact (K, D) expected, if known.
    """
    chunk = np.asarray(action, dtype=np.float32)
    if chunk.ndim != 2 or (shape is not None and chunk.shape != tuple(shape)):
        want = f"{tuple(shape)}" if shape is not None else "(K, D)"
        raise ValueError(f"{where} must return an action chunk of shape {want}, got {chunk.shape}")
    if not np.all(np.isfinite(chunk)):
        raise ValueError(f"{where} returned non-finite actions: {chunk}")
    return chunk
