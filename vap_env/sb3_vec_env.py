"""``SB3VecEnv``: a stable-baselines3 ``VecEnv`` over ``VAPVectorEnv``, so SB3 batches the world model.

stable-baselines3 steps a single Gymnasium env through ``DummyVecEnv`` (one world-model call per env
per step). This adapter hands SB3 the native vector env instead, so an algorithm with ``n_envs``
environments makes one batched world-model call per step:

```python
from stable_baselines3 import PPO
from vap_env.sb3_vec_env import SB3VecEnv
from vap_env.vector_env import VAPVectorEnv  # noqa: E402

venv = SB3VecEnv(VAPVectorEnv(num_envs=8, preset="rt1", autoreset_mode="SameStep", max_episode_steps=10))
PPO("MultiInputPolicy", venv, n_steps=16).learn(10_000)
```

SB3 resets a finished env within the same step and wants its last observation in
``info["terminal_observation"]``: that is Gymnasium's ``SAME_STEP`` autoreset, so the vector env
must be built with ``autoreset_mode="SameStep"``. Per-env infos are unbatched from Gymnasium's
``{key: array, "_key": mask}`` layout back to one dict per env, with ``TimeLimit.truncated`` set as
SB3's ``DummyVecEnv`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from vap_env._optional import quiet_tensorflow

quiet_tensorflow()  # stable-baselines3 imports TensorBoard, which imports TensorFlow when present

from stable_baselines3.common.vec_env import VecEnv  # noqa: E402
from stable_baselines3.common.vec_env.base_vec_env import (  # noqa: E402
    VecEnvIndices,
    VecEnvStepReturn,
)

from vap_env.vector_env import VAPVectorEnv  # noqa: E402

__all__ = ["SB3VecEnv", "unbatch_info"]


def unbatch_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s entries of a Gymnasium vector info dict (``{key: values, "_key": mask}``)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_") or not infos.get(f"_{key}", np.zeros(i + 1, bool))[i]:
            continue
        out[key] = unbatch_info(value, i) if isinstance(value, dict) else value[i]
    return out


class SB3VecEnv(VecEnv):
    """A stable-baselines3 ``VecEnv`` backed by one ``VAPVectorEnv`` (see the module docstring).

    Args:
        env: a ``VAPVectorEnv`` built with ``autoreset_mode="SameStep"``.
    """

    def __init__(self, env: VAPVectorEnv) -> None:
        if not isinstance(env, VAPVectorEnv):
            raise TypeError(f"SB3VecEnv wraps a VAPVectorEnv, got {type(env).__name__}")
        if env.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs a VAPVectorEnv with autoreset_mode='SameStep' (SB3 resets finished "
                f"envs in the same step), got {env.autoreset_mode.value!r}"
            )
        self.env = env  # before VecEnv.__init__, which reads render_mode through get_attr
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        # the env's render modes and fps (SB3's VecVideoRecorder reads render_fps), not SB3's default
        self.metadata = dict(env.metadata)
        self._actions: np.ndarray | None = None

    def reset(self) -> dict[str, np.ndarray]:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        # Always per env: SB3's set_options copies even one shared dict per env, and options hold
        # arrays (a start image, joints), which `==` cannot compare.
        per_env = [dict(o) for o in self._options]
        obs, infos = self.env.reset(seed=seeds, options={"per_env": per_env})
        self.reset_infos = [unbatch_info(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        dones = terminated | truncated
        env_infos = []
        for i in range(self.num_envs):
            info = unbatch_info(infos, i)
            final = info.pop("final_info", None)
            final_obs = info.pop("final_obs", None)
            if dones[i]:
                # The step's own info is in final_info; info now holds the reset's entries.
                self.reset_infos[i] = info
                info = {**final, "terminal_observation": final_obs}
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            env_infos.append(info)
        return obs, rewards.astype(np.float32), dones, env_infos

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    # The sub-envs share one object, so attributes and methods are those of the vector env.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def _all_envs(self, indices: VecEnvIndices, what: str) -> list[int]:
        chosen = list(self._get_indices(indices))
        if sorted(chosen) != list(range(self.num_envs)):
            # One batched VAPVectorEnv holds every env: there is no per-env copy to change.
            raise ValueError(
                f"{what} on envs {chosen}: SB3VecEnv wraps one batched VAPVectorEnv whose "
                "attributes and methods are shared by all envs; pass indices=None"
            )
        return chosen

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all_envs(indices, f"set_attr({attr_name!r})")
        setattr(self.env, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        chosen = self._all_envs(indices, f"env_method({method_name!r})")
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in chosen]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
