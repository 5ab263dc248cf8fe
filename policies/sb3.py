"""``sb3``: a saved stable-baselines3 model (.zip) as a vap-env policy.

Train with SB3 on the env as usual (its Dict observation space with ``image``, ``skeleton`` and
``proprio`` works with ``"MultiInputPolicy"``, its (K, D) Box action space with any continuous
algorithm), save, and evaluate with ``make_policy("sb3", path="model.zip", algo="ppo")``. The
adapter passes only the observation keys the model was trained on, keeps the hidden state of
recurrent policies (sb3-contrib's ``RecurrentPPO``) between calls, and returns the predicted action
as a (K, D) chunk -- a model trained on a single-action (D,) space yields (1, D); wrap it in
``single_action`` to fill a K-step chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from policies.base import as_chunk
from vap_env._optional import quiet_tensorflow
from vap_env.config import did_you_mean

# algo name -> "module:Class" (sb3-contrib algorithms need that package installed)
ALGORITHMS: dict[str, str] = {
    "a2c": "stable_baselines3:A2C",
    "ddpg": "stable_baselines3:DDPG",
    "ppo": "stable_baselines3:PPO",
    "sac": "stable_baselines3:SAC",
    "td3": "stable_baselines3:TD3",
    "recurrent_ppo": "sb3_contrib:RecurrentPPO",
    "tqc": "sb3_contrib:TQC",
}


@dataclasses.dataclass(frozen=True)
class SB3PolicyConfig:
    """Where the saved model is and how to query it."""

    path: str = dataclasses.field(metadata={"help": "the .zip written by model.save()"})
    algo: str = dataclasses.field(
        default="ppo", metadata={"help": f"algorithm that saved it: {sorted(ALGORITHMS)}"}
    )
    deterministic: bool = dataclasses.field(
        default=True, metadata={"help": "the distribution's mode instead of a sample"}
    )
    obs_key: str | None = dataclasses.field(
        default=None,
        metadata={"help": "for a model trained on one Box observation: which key to pass it"},
    )
    device: str = dataclasses.field(default="cpu", metadata={"help": "torch device"})


class SB3Policy:
    """A loaded SB3 model behind the ``Policy`` protocol (see module docstring)."""

    config_class: ClassVar[type] = SB3PolicyConfig

    def __init__(self, cfg: SB3PolicyConfig) -> None:
        if cfg.algo not in ALGORITHMS:
            names = sorted(ALGORITHMS)
            raise KeyError(
                f"unknown SB3 algorithm {cfg.algo!r}; available: {names}.{did_you_mean(cfg.algo, names)}"
            )
        if not Path(cfg.path).is_file():
            raise FileNotFoundError(
                f"SB3 model {cfg.path!r} does not exist (expected model.save()'s .zip)"
            )
        module, _, cls = ALGORITHMS[cfg.algo].partition(":")
        quiet_tensorflow()  # SB3 imports TensorBoard, which imports TensorFlow when present
        algo_cls = getattr(importlib.import_module(module), cls)
        self.cfg = cfg
        self.model = algo_cls.load(cfg.path, device=cfg.device)
        self._keys = list(getattr(self.model.observation_space, "spaces", {}) or [])
        self._state: Any = None
        self._episode_start = np.ones((1,), dtype=bool)
        # this policy's own sampling stream: CPU generator state (+ the CUDA one on a GPU)
        self._rng_state: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Clear recurrent state; a seed fixes the sampling of ``deterministic=False``.

        The seed starts a private torch random stream: ``model.set_random_seed`` would reseed
        the process-wide random / NumPy / torch generators, under everything else running.
        """
        self._state = None
        self._episode_start = np.ones((1,), dtype=bool)
        if seed is not None:
            cpu = torch.Generator().manual_seed(seed).get_state()
            device = self.model.device
            cuda = (
                torch.Generator(device=device).manual_seed(seed).get_state()
                if device.type == "cuda"
                else None
            )
            self._rng_state = (cpu, cuda)

    def _model_observation(self, observation: Mapping[str, Any]) -> Any:
        if self._keys:  # Dict observation space: pass exactly its keys
            missing = [k for k in self._keys if k not in observation]
            if missing:
                raise KeyError(
                    f"the SB3 model expects observation keys {self._keys}; missing {missing} "
                    f"(got {sorted(observation)})"
                )
            return {k: np.asarray(observation[k]) for k in self._keys}
        if not isinstance(observation, Mapping):
            return np.asarray(observation)
        if self.cfg.obs_key is None or self.cfg.obs_key not in observation:
            raise KeyError(
                "the SB3 model was trained on a single Box observation; set obs_key to one of "
                f"{sorted(observation)} (got obs_key={self.cfg.obs_key!r})"
            )
        return np.asarray(observation[self.cfg.obs_key])

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """``model.predict`` on the observation, as a (K, D) float32 chunk."""
        obs = self._model_observation(observation)
        own = self._rng_state is not None and not self.cfg.deterministic
        device = self.model.device
        with contextlib.ExitStack() as stack:
            if own:
                # Sample from this policy's stream, and give the process its own back afterwards.
                cpu, cuda = self._rng_state
                stack.enter_context(
                    torch.random.fork_rng(devices=[device] if cuda is not None else [])
                )
                torch.set_rng_state(cpu)
                if cuda is not None:
                    torch.cuda.set_rng_state(cuda, device)
            action, self._state = self.model.predict(
                obs,
                state=self._state,
                episode_start=self._episode_start,
                deterministic=self.cfg.deterministic,
            )
            if own:
                cuda_after = torch.cuda.get_rng_state(device) if cuda is not None else None
                self._rng_state = (torch.get_rng_state(), cuda_after)
        self._episode_start = np.zeros((1,), dtype=bool)
        action = np.asarray(action, dtype=np.float32)
        return as_chunk(action[None] if action.ndim == 1 else action, where="sb3 policy")
