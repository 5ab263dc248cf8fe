"""``replay``: a dataset episode's own actions, chunk by chunk (what the ST-IoU benchmark replays)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from policies.base import as_chunk

# What a missing tail action means in each action mode: "stay where you are".
# Delta modes stay with zero increments; absolute modes stay by repeating the last target.
HOLD_PADDING: dict[str, str] = {
    "ee_delta": "zeros",
    "joint_delta": "zeros",
    "ee_pos": "last",
    "joint_pos": "last",
}


class EpisodeLike(Protocol):
    """Anything with per-step actions, e.g. ``vap_env.data.Episode``."""

    actions: np.ndarray  # (T, D)


@dataclasses.dataclass(frozen=True)
class ReplayPolicyConfig:
    """How an episode's (T, D) actions are cut into (K, D) chunks."""

    chunk_size: int = dataclasses.field(
        metadata={"help": "K, the env's chunk_frames (actions per env step)"}
    )
    drop_last: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "drop the episode's last action: actions[t] leads from frame t to t+1, so the "
            "last one has no recorded outcome (RT-1's is zeros anyway)"
        },
    )
    pad: Literal["auto", "zeros", "last"] = dataclasses.field(
        default="auto",
        metadata={
            "help": "how to fill the last partial chunk: 'auto' holds still in the episode's "
            "action_mode (zeros for delta modes, the last target for absolute modes)"
        },
    )

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.pad not in ("auto", "zeros", "last"):
            raise ValueError(f"pad must be 'auto', 'zeros' or 'last', got {self.pad!r}")


class ReplayPolicy:
    """Plays ``episode.actions`` back in chunks of K; the observation is ignored.

    ``reset()`` rewinds to the first action. Asking for more chunks than the episode has raises
    (``num_chunks`` says how many there are), so a rollout cannot silently outrun its data.
    """

    config_class: ClassVar[type] = ReplayPolicyConfig

    def __init__(self, episode: EpisodeLike, cfg: ReplayPolicyConfig) -> None:
        actions = np.asarray(episode.actions, dtype=np.float32)
        if actions.ndim != 2:
            raise ValueError(f"episode.actions must have shape (T, D), got {actions.shape}")
        if cfg.drop_last:
            actions = actions[:-1]
        if len(actions) == 0:
            raise ValueError("the episode has no actions to replay (T <= 1 with drop_last=True)")
        pad = cfg.pad
        if pad == "auto":
            mode = getattr(episode, "action_mode", None)
            if mode not in HOLD_PADDING:
                raise ValueError(
                    f"pad='auto' needs episode.action_mode in {sorted(HOLD_PADDING)}, got "
                    f"{mode!r}; pass pad='zeros' or pad='last'"
                )
            pad = HOLD_PADDING[mode]
        k = cfg.chunk_size
        missing = -len(actions) % k
        fill = np.zeros_like(actions[:1]) if pad == "zeros" else actions[-1:]
        actions = np.concatenate([actions, np.repeat(fill, missing, axis=0)])
        self.cfg = cfg
        self.episode = episode
        self.chunks = actions.reshape(-1, k, actions.shape[1])  # (num_chunks, K, D)
        self.num_padded = missing
        self._next = 0

    @property
    def num_chunks(self) -> int:
        """How many chunks the episode fills (the last one possibly padded)."""
        return len(self.chunks)

    @property
    def done(self) -> bool:
        """True once every chunk has been played."""
        return self._next >= self.num_chunks

    def reset(self, instruction: str, seed: int | None = None) -> None:
        """Rewind to the first chunk (instruction and seed are not needed)."""
        self._next = 0

    def act(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next chunk, (K, D) float32."""
        if self.done:
            raise RuntimeError(
                f"replay of episode {getattr(self.episode, 'episode_id', '?')!r} is exhausted after "
                f"{self.num_chunks} chunks; reset() to start over or end the rollout at "
                "policy.done"
            )
        chunk = self.chunks[self._next]
        self._next += 1
        return as_chunk(chunk.copy(), where="replay policy")
