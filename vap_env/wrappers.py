"""Wrappers: single-action policies -> action chunks, and NumPy <-> torch at the edge of the env.

```python
env = SingleActionWrapper(gym.make("vap_env:VAP-RT1-v0"), mode="repeat")  # action (7,) per step
env = TorchWrapper(gym.make("vap_env:VAP-RT1-v0"), device="cuda")           # torch in, torch out
envs = TorchVectorWrapper(gym.make_vec("VAP-RT1-v0", num_envs=8, vectorization_mode="vector_entry_point"))
```

Gymnasium's own ``NumpyToTorch`` converts every leaf of ``info`` and ``options`` as an array, which
breaks on the env's string instruction and on ``{"episode": Episode}`` options; these wrappers convert
arrays and tensors and pass everything else through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper

from kinematics.transforms import quat_to_matrix
from vap_env.actions import matrix_to_rotvec, rotvec_to_matrix, validate_chunk

__all__ = ["SingleActionWrapper", "TorchVectorWrapper", "TorchWrapper", "to_numpy", "to_torch"]


class SingleActionWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adapt a policy that emits one action per control step (as RT-1 policies do) to (K, D) chunks.

    The wrapped env's action space is ``(K, D)``; this one is ``(D,)``. One policy action becomes a
    chunk by ``mode``:

    - ``"repeat"``: the action is executed at each of the K control ticks of the chunk (RT-1's
      semantics when the policy is queried once per chunk: a delta is applied K times, an absolute
      target is held).
    - ``"spread"``: the chunk reaches the action exactly once by its last tick: deltas are divided
      by K (an axis-angle rotation_delta d becomes K rotations d / K, which compose to d);
      absolute targets are interpolated from the current state (joints and gripper linearly, TCP
      position linearly and orientation along the geodesic).

    Args:
        env: a ``VAPEnv`` (possibly wrapped); not a vector env.
        mode: ``"repeat"`` or ``"spread"``.
    """

    MODES = ("repeat", "spread")

    def __init__(self, env: gym.Env, mode: str = "repeat") -> None:
        # recorded so that env.spec (and gym.make(env.spec), check_env) can rebuild the wrapper
        gym.utils.RecordConstructorArgs.__init__(self, mode=mode)
        gym.Wrapper.__init__(self, env)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 2:
            raise ValueError(
                f"SingleActionWrapper needs an env with a (K, D) Box action space, got {space}"
            )
        self.mode = mode
        self.chunk_frames, self.action_dim = space.shape
        self._chunk_low, self._chunk_high = space.low, space.high
        self.action_space = gym.spaces.Box(space.low[0], space.high[0], dtype=space.dtype)
        core = env.unwrapped.core
        self._action_mode = core.action_mode.name
        self._absolute = core.action_mode.absolute_gripper
        self._num_joints = core.num_joints
        self._clip = bool(core.cfg.clip_actions)
        self._proprio: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._proprio = np.asarray(obs["proprio"], np.float64)
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.chunk(action))
        self._proprio = np.asarray(obs["proprio"], np.float64)
        return obs, reward, terminated, truncated, info

    def chunk(self, action: Any) -> np.ndarray:
        """The (K, D) float32 chunk one action (D,) becomes (see the class docstring)."""
        # Checked against this wrapper's (D,) space, so that errors name the policy's action and
        # a "spread" delta is not divided into range.
        a = validate_chunk(
            action, self.action_space.low, self.action_space.high, clip=self._clip, where="action"
        )
        k = self.chunk_frames
        if self.mode == "repeat":
            return np.tile(a, (k, 1)).astype(np.float32)
        if not self._absolute:
            return np.tile(a / k, (k, 1)).astype(np.float32)
        if self._proprio is None:
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        frac = np.arange(1, k + 1)[:, None] / k  # (K, 1)
        j, proprio = self._num_joints, self._proprio
        gripper = proprio[-1] + frac[:, 0] * (a[-1] - proprio[-1])
        if self._action_mode == "joint_pos":
            rows = np.concatenate([proprio[:j] + frac * (a[:j] - proprio[:j]), gripper[:, None]], 1)
        else:  # ee_pos: position linear, orientation along the geodesic from the current one
            start_rot = quat_to_matrix(proprio[j + 3 : j + 7])
            log = matrix_to_rotvec(rotvec_to_matrix(a[3:6]) @ start_rot.T)
            rotvecs = [matrix_to_rotvec(rotvec_to_matrix(f * log) @ start_rot) for f in frac[:, 0]]
            position = proprio[j : j + 3] + frac * (a[:3] - proprio[j : j + 3])
            rows = np.concatenate([position, np.stack(rotvecs), gripper[:, None]], 1)
        rows[-1] = a  # exactly the policy's target at the last tick
        # The current state may lie outside the action box (e.g. a TCP outside the ee_pos workspace).
        return np.clip(rows, self._chunk_low, self._chunk_high).astype(np.float32)


def to_torch(value: Any, device: str | torch.device | None = None) -> Any:
    """NumPy arrays (also inside dicts, lists, tuples) -> torch tensors on ``device``; rest unchanged.

    Object arrays (e.g. a vector env's per-env instructions) are left as they are.
    """
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return value
        return torch.from_numpy(np.ascontiguousarray(value)).to(device)
    if isinstance(value, Mapping):
        return {k: to_torch(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_torch(v, device) for v in value)
    return value


def to_numpy(value: Any) -> Any:
    """Torch tensors (also inside dicts, lists, tuples) -> NumPy arrays on the CPU; rest unchanged."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_numpy(v) for v in value)
    return value


class TorchWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Torch tensors in (actions, reset options), torch tensors out (observations, info arrays).

    Reward, terminated and truncated stay Python scalars and ``render()`` stays NumPy, as with
    Gymnasium's ``NumpyToTorch``.

    Args:
        env: the env to wrap.
        device: where returned tensors live (None: CPU).
    """

    def __init__(self, env: gym.Env, device: str | torch.device | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, device=device)
        gym.Wrapper.__init__(self, env)
        self.device = device

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=to_numpy(options))
        return to_torch(obs, self.device), to_torch(info, self.device)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(to_numpy(action))
        return (
            to_torch(obs, self.device),
            float(reward),
            bool(terminated),
            bool(truncated),
            to_torch(info, self.device),
        )


class TorchVectorWrapper(VectorWrapper):
    """``TorchWrapper`` for vector envs: rewards, terminations and truncations become tensors too."""

    def __init__(self, env: VectorEnv, device: str | torch.device | None = None) -> None:
        super().__init__(env)
        self.device = device

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, infos = self.env.reset(seed=seed, options=to_numpy(options))
        return to_torch(obs, self.device), to_torch(infos, self.device)

    def step(self, actions: Any) -> tuple[Any, ...]:
        return to_torch(self.env.step(to_numpy(actions)), self.device)
