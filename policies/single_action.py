"""``single_action``: run a one-action-per-step policy (RT-1-style, 3 Hz) in a K-action-chunk env.

The env advances K control steps per call (K = chunk_frames, a multiple of 4 because the video
VAE compresses time by 4), and it only returns an observation at the end of the chunk. A policy
trained to emit one action per control step must therefore act open-loop for K steps. Two ways:

``repeat``
    Query once and hold that action for all K steps. One policy call per chunk (cheapest), and
    what a deterministic policy would answer anyway, since it sees the same image each time. For
    delta actions (RT-1's ``ee_delta``) the arm keeps moving in the same direction for K steps,
    i.e. K times the intended displacement before the policy can correct.
``requery``
    Query K times on the same (stale) observation. K times the cost; for a deterministic policy
    it gives the same chunk as ``repeat``; for a stochastic one it draws K independent actions,
    so the per-step action distribution matches the policy's while staying open-loop. Use it for
    sampling policies whose single draws are noisy (e.g. discretised RT-1 token sampling).

Neither recovers closed-loop control within a chunk: that needs a smaller K.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from policies.base import Policy


@dataclasses.dataclass(frozen=True)
class SingleActionPolicyConfig:
    """How single actions fill a chunk."""

    chunk_size: int = dataclasses.field(metadata={"help": "K, the env's chunk_frames"})
    mode: Literal["repeat", "requery"] = dataclasses.field(
        default="repeat",
        metadata={"help": "'repeat': query once and hold; 'requery': query K times"},
    )

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.mode not in ("repeat", "requery"):
            raise ValueError(f"mode must be 'repeat' or 'requery', got {self.mode!r}")


class SingleActionPolicy:
    """Wraps a callable ``observation -> (D,)`` or a ``Policy`` returning (D,) or (1, D)."""

    config_class: ClassVar[type] = SingleActionPolicyConfig

    def __init__(
        self,
        inner: Policy | Callable[[Mapping[str, Any]], np.ndarray],
        cfg: SingleActionPolicyConfig,
    ) -> None:
        if not (isinstance(inner, Policy) or callable(inner)):
            raise TypeError(f"inner must be a Policy or a callable, got {type(inner).__name__}")
        self.inner = inner
        self.cfg = cfg

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Forwarded to the inner policy (a plain callable has nothing to reset)."""
        if isinstance(self.inner, Policy):
            self.inner.reset(instruction, seed=seed)

    def _query(self, observation: Mapping[str, Any]) -> np.ndarray:
        out = (
            self.inner.act(observation)
            if isinstance(self.inner, Policy)
            else self.inner(observation)
        )
        action = np.asarray(out, dtype=np.float32)
        if action.ndim == 2 and action.shape[0] == 1:
            action = action[0]
        if action.ndim != 1:
            raise ValueError(
                f"the inner policy must return one action (D,) or (1, D), got {action.shape}; "
                "a policy that already returns chunks needs no single_action adapter"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"the inner policy returned a non-finite action: {action}")
        return action

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """A (K, D) float32 chunk, built by ``cfg.mode``."""
        k = self.cfg.chunk_size
        if self.cfg.mode == "repeat":
            return np.repeat(self._query(observation)[None], k, axis=0)
        return np.stack([self._query(observation) for _ in range(k)])
