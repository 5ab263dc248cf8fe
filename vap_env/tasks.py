"""Pluggable tasks: the reward and termination of a VAP env.

A world model has no simulator state to read success from, so a task judges each step from what the
env knows: the proprio trajectory the actions produced, the generated frames, the instruction. The
default task gives reward 0.0 and never terminates (the env is then a pure simulator, e.g. for
policy evaluation with an external judge). Write a new one by subclassing :class:`Task`:

```python
class StayLow(Task):
    def step(self, slot, step):
        tcp_z = step.proprio[-1, step.num_joints + 2]
        return -tcp_z, False, {}

env = gym.make("vap_env:VAP-RT1-v0", task=StayLow())
```

Tasks are per env slot: a natively batched env calls them once per slot with that slot's data, so
one task instance serves all slots and keeps per-slot state in its own arrays or dicts. Each env
works on its own copy of the task it is given (``env.unwrapped.task``), so one instance can be
handed to several envs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vap_env.config import did_you_mean

__all__ = ["TASKS", "NullTask", "ReachTask", "Task", "TaskStep", "make_task"]


@dataclass(frozen=True)
class TaskStep:
    """What a task sees of one env step of one slot."""

    proprio: np.ndarray  # (K, J + 8) [joints (J), tcp_pose (7), gripper (1)] after each action
    frames: np.ndarray  # (K, H, W, 3) uint8 generated frames
    skeleton_frames: np.ndarray  # (K, H, W, 3) uint8 skeleton prompt frames
    instruction: str
    elapsed_steps: int  # env steps taken in this episode, this one included
    num_joints: int  # J, to index ``proprio``


class Task:
    """Reward and termination; the base class is the default task (reward 0.0, never terminates)."""

    def reset(
        self, slot: int, proprio: np.ndarray, instruction: str, np_random: np.random.Generator
    ) -> dict[str, Any]:
        """Start an episode in ``slot`` from ``proprio`` (J + 8,); return extra reset-info entries.

        Draw any randomness from ``np_random`` (the slot's generator) so seeded resets repeat.
        """
        return {}

    def step(self, slot: int, step: TaskStep) -> tuple[float, bool, dict[str, Any]]:
        """Judge one env step of ``slot``: (reward, terminated, extra info entries)."""
        return 0.0, False, {}


class NullTask(Task):
    """No reward, no termination: episodes end only by truncation (``max_episode_steps``)."""


class ReachTask(Task):
    """Move the TCP to a point fixed relative to its start position.

    Reward per step: minus the distance (m) from the TCP after the last action of the chunk to the
    goal; terminates (success) once that distance is below ``tolerance_m``. The goal is a fixed
    offset from the start TCP, so a policy can learn it from ``proprio`` alone. Info: ``goal`` (3,)
    at reset; ``distance`` (m) and ``is_success`` (what SB3's EvalCallback reads) at each step.

    Args:
        offset: goal minus start TCP position, base frame (m).
        tolerance_m: success radius (m).
    """

    def __init__(
        self, offset: tuple[float, float, float] = (0.0, 0.0, 0.1), tolerance_m: float = 0.02
    ) -> None:
        if not tolerance_m > 0:  # NaN too: it would never terminate
            raise ValueError(f"tolerance_m must be > 0, got {tolerance_m}")
        self.offset = np.asarray(offset, dtype=np.float64)
        if self.offset.shape != (3,):
            raise ValueError(f"offset must have 3 components (x, y, z), got {offset!r}")
        self.tolerance_m = tolerance_m
        self._goals: dict[int, np.ndarray] = {}

    def reset(
        self, slot: int, proprio: np.ndarray, instruction: str, np_random: np.random.Generator
    ) -> dict[str, Any]:
        num_joints = proprio.shape[-1] - 8
        self._goals[slot] = proprio[num_joints : num_joints + 3].astype(np.float64) + self.offset
        return {"goal": self._goals[slot].copy()}

    def step(self, slot: int, step: TaskStep) -> tuple[float, bool, dict[str, Any]]:
        tcp = step.proprio[-1, step.num_joints : step.num_joints + 3]
        distance = float(np.linalg.norm(tcp - self._goals[slot]))
        success = distance < self.tolerance_m
        return -distance, success, {"distance": distance, "is_success": success}


TASKS: dict[str, type[Task]] = {"none": NullTask, "reach": ReachTask}


def make_task(name: str) -> Task:
    """Build the registered task ``name`` (one of ``TASKS``) with its default arguments."""
    if name not in TASKS:
        raise ValueError(
            f"unknown task {name!r}; choose one of {sorted(TASKS)} or pass a Task instance."
            + did_you_mean(name, list(TASKS))
        )
    return TASKS[name]()
