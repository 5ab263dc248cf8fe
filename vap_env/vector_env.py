"""``VAPVectorEnv``: N VAP envs stepped with one world-model call (a native Gymnasium vector env).

```python
import gymnasium as gym
import vap_env  # registers the ids

envs = gym.make_vec("VAP-RT1-v0", num_envs=8, vectorization_mode="vector_entry_point")
obs, infos = envs.reset(seed=0)  # env i is seeded with 0 + i, like SyncVectorEnv
obs, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())
envs.reset(options={"reset_mask": np.array([True] + [False] * 7)})  # partial reset
```

It follows ``SyncVectorEnv`` exactly (seeds, autoreset, partial resets, the info layout built by
``VectorEnv._add_info``), so it equals ``SyncVectorEnv`` over N ``VAPEnv`` with the same seeds,
up to float rounding: batched matmuls round differently from per-item ones, which flips a rare
pixel by one level, and as each chunk starts from the last generated frame, the share of such
pixels grows over an episode (measured with ``tiny-rt1``, one denoising step: 0.003% of pixels
after 1 chunk, 0.5% after 8, each off by one level). Proprio, rewards and infos are exact. It is
faster because the kinematics of all envs feed one batched diffusion call. ``SyncVectorEnv`` and
``AsyncVectorEnv`` over ``gym.make(...)`` work too (each env, or worker, has its own pybullet client
and model), with its default ``fork`` context too: a forked worker runs torch on one thread (set
at fork by ``vap_env.core``), since a child's first multi-threaded op after its parent's thread
pool has run hangs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from vap_env.actions import as_numbers
from vap_env.core import VAPCore
from vap_env.env import EnvConfig, resolve_env_args
from vap_env.tasks import Task

__all__ = ["VAPVectorEnv"]


class VAPVectorEnv(VectorEnv):
    """``num_envs`` VAP envs batched into one world-model call per step.

    The spaces, observations, rewards, task and options of one sub-env are those of
    :class:`vap_env.env.VAPEnv` (its docstring is the spec); this class adds the batching:

    - ``reset(seed=s)`` seeds env i with ``s + i`` (a list seeds each env); ``seed=None`` keeps
      each env's generator.
    - ``reset(options=...)``: the options of ``VAPEnv.reset`` apply to every env being reset;
      ``options["per_env"]`` (a list of ``num_envs`` option dicts or None) gives each its own (e.g.
      one dataset episode per env); ``options["reset_mask"]`` ((num_envs,) bool) resets only those.
    - Autoreset (``metadata["autoreset_mode"]``): ``NEXT_STEP`` by default: the step after an env
      terminates or truncates resets it (built-in scene, its own generator) and ignores its action;
      ``SAME_STEP`` and ``DISABLED`` behave as in ``SyncVectorEnv``.
    - ``render()`` returns a tuple with one rgb_array per env.

    Args:
        num_envs: number of envs.
        preset, render_mode, config, task, **overrides: as for ``VAPEnv``.
        autoreset_mode: a ``gymnasium.vector.AutoresetMode`` (or its value).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 3,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        preset: str | None = "rt1",
        render_mode: str | None = None,
        config: EnvConfig | None = None,
        task: Task | str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **overrides: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        num_envs = int(num_envs)
        self.config, task = resolve_env_args(
            preset, config, task, overrides, render_mode, self.metadata["render_modes"]
        )
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode={autoreset_mode!r}; use one of {[m.value for m in AutoresetMode]}"
            ) from None
        self.render_mode = render_mode
        self.core = VAPCore(self.config, num_envs, task)
        self.metadata = {
            **type(self).metadata,
            "render_fps": self.config.render_fps / self.core.chunk_frames,  # one frame per step
            "autoreset_mode": self.autoreset_mode,
        }
        self.num_envs = num_envs
        self.single_action_space = self.core.single_action_space
        self.single_observation_space = self.core.single_observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._autoreset_envs = np.zeros(num_envs, bool)

    @property
    def chunk_frames(self) -> int:
        """K, the number of actions per env per step."""
        return self.core.chunk_frames

    def _open_core(self, call: str) -> VAPCore:
        if getattr(self, "core", None) is None:
            raise ClosedEnvironmentError(f"envs.{call}() after envs.close(); make a new env")
        return self.core

    def _observations(self) -> dict[str, np.ndarray]:
        core = self.core
        return {
            "image": core.image.copy(),
            "skeleton": core.skeleton.copy(),
            "proprio": np.stack([core.proprio(i) for i in range(self.num_envs)]),
        }

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        is_seq = isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str | bytes)
        seeds = list(seed) if is_seq else None
        if seeds is None or len(seeds) != self.num_envs:
            raise ValueError(
                f"seed must be an int, None or a list of num_envs={self.num_envs} ints/None, "
                f"got {seed!r}"
            )
        if any(s is not None and not isinstance(s, int | np.integer) for s in seeds):
            raise ValueError(f"seed list entries must be ints or None, got {seeds}")
        return [None if s is None else int(s) for s in seeds]

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every env (or those in ``options["reset_mask"]``); see the class docstring."""
        self._open_core("reset")
        seeds = self._seeds(seed)
        if isinstance(seed, int | np.integer):
            super().reset(seed=int(seed))
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, bool)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_):
            raise ValueError(f"options['reset_mask'] must be a numpy bool array, got {mask!r}")
        elif mask.shape != (self.num_envs,) or not mask.any():
            raise ValueError(
                f"options['reset_mask'] must have shape ({self.num_envs},) with at least one True, "
                f"got {mask}"
            )
        per_env = options.pop("per_env", None)
        if per_env is not None and (
            not isinstance(per_env, list | tuple) or len(per_env) != self.num_envs
        ):
            raise ValueError(
                f"options['per_env'] must be a list of num_envs={self.num_envs} option dicts "
                f"(or None entries), got {type(per_env).__name__} of length "
                f"{len(per_env) if hasattr(per_env, '__len__') else '?'}"
            )
        if per_env is not None and not all(o is None or isinstance(o, Mapping) for o in per_env):
            raise ValueError(
                "options['per_env'] entries must be option dicts or None, got "
                f"{[type(o).__name__ for o in per_env]}"
            )
        if per_env is not None and options:
            raise ValueError(
                f"pass either shared options {sorted(options)} or options['per_env'], not both"
            )
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            rng = self.core.np_randoms[i]
            if seeds[i] is not None or rng is None:
                rng, _ = seeding.np_random(seeds[i])
            env_options = per_env[i] if per_env is not None else options
            _, info = self.core.reset_slot(int(i), rng, env_options)
            infos = self._add_info(infos, info, int(i))
        self._autoreset_envs[mask] = False
        return self._observations(), infos

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its chunk ``actions[i]`` (num_envs, K, D); autoreset as configured."""
        core = self._open_core("step")
        if not core.started.all():
            raise ResetNeeded("Cannot call envs.step() before calling envs.reset()")
        shape = self.action_space.shape
        actions = as_numbers(
            actions, "actions", f"a numeric array of shape {shape} (num_envs, K, D)"
        )
        if actions.shape[:1] != (self.num_envs,):
            raise ValueError(
                f"actions must have shape {shape} (num_envs, K, D), got {actions.shape}"
            )
        rewards = np.zeros(self.num_envs)
        terminations = np.zeros(self.num_envs, bool)
        truncations = np.zeros(self.num_envs, bool)
        env_infos: dict[int, dict[str, Any]] = {}
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            to_step = [i for i in range(self.num_envs) if not self._autoreset_envs[i]]
            for i in np.flatnonzero(self._autoreset_envs):
                _, env_infos[int(i)] = core.reset_slot(int(i), core.np_randoms[i], None)
        else:
            if self.autoreset_mode == AutoresetMode.DISABLED and self._autoreset_envs.any():
                raise ResetNeeded(
                    f"envs {np.flatnonzero(self._autoreset_envs).tolist()} have ended and autoreset "
                    "is disabled: reset them with options={'reset_mask': ...} first"
                )
            to_step = list(range(self.num_envs))
        if to_step:
            chunks = np.stack([core.validate(actions[i], where=f"actions[{i}]") for i in to_step])
            final_obs: dict[int, dict[str, np.ndarray]] = {}
            for i, (obs, reward, terminated, truncated, info) in zip(
                to_step, core.step_slots(to_step, chunks), strict=True
            ):
                rewards[i], terminations[i], truncations[i] = reward, terminated, truncated
                env_infos[i] = info
                if self.autoreset_mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                    final_obs[i] = obs
            for i, obs in final_obs.items():
                final = {"final_obs": obs, "final_info": env_infos[i]}
                _, env_infos[i] = core.reset_slot(i, core.np_randoms[i], None)
                env_infos[i] = {**final, **env_infos[i]}
        infos: dict[str, Any] = {}
        for i in sorted(env_infos):
            infos = self._add_info(infos, env_infos[i], i)
        self._autoreset_envs = terminations | truncations
        return self._observations(), rewards, terminations, truncations, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One rgb_array per env (``render_mode="rgb_array"``), else None."""
        if self.render_mode is None:
            return None
        core = self._open_core("render")
        return tuple(core.render(i) for i in range(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        """Release the robot model's pybullet client."""
        if getattr(self, "core", None) is not None:
            self.core.close()
            self.core = None  # type: ignore[assignment]
