"""``random``: uniform samples of the env's action space (a floor every real policy should beat)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces


@dataclasses.dataclass(frozen=True)
class RandomPolicyConfig:
    """Seeded samples of a Box action space."""

    seed: int | None = dataclasses.field(
        default=None, metadata={"help": "seed used until reset() is given another one"}
    )


class RandomPolicy:
    """Samples ``action_space`` (a Box of shape (K, D)) with gymnasium's own sampler.

    The space is copied, so seeding the policy does not reseed the env's space. ``reset(seed=s)``
    restarts the sample stream; ``reset(seed=None)`` continues it.
    """

    config_class: ClassVar[type] = RandomPolicyConfig

    def __init__(self, action_space: spaces.Box, cfg: RandomPolicyConfig | None = None) -> None:
        if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 2:
            raise ValueError(
                f"RandomPolicy needs the env's Box action space of shape (K, D), got {action_space}"
            )
        self.cfg = cfg or RandomPolicyConfig()
        self.action_space = copy.deepcopy(action_space)
        self.action_space.seed(self.cfg.seed)

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """The instruction is ignored; a seed restarts the sample stream."""
        if seed is not None:
            self.action_space.seed(seed)

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """A uniform sample, (K, D) float32 (the observation is ignored)."""
        return self.action_space.sample().astype(np.float32)
