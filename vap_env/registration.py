"""Declarative registration of the vap-env environments with Gymnasium.

The entry points are strings, so registering imports neither torch nor pybullet. Gymnasium >= 1.0
dropped plugin entry points; ``gym.make("vap_env:VAP-RT1-v0")`` imports this package on demand.
"""

from __future__ import annotations

import gymnasium

# env id -> keyword arguments of VAPEnv / VAPVectorEnv (the env preset in configs/env/)
ENV_IDS: dict[str, dict[str, str]] = {
    "VAP-RT1-v0": {"preset": "rt1"},
    "VAP-DROID-v0": {"preset": "droid"},
}


def register_envs() -> None:
    """Register every id in ``ENV_IDS`` (idempotent)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="vap_env.env:VAPEnv",
            vector_entry_point="vap_env.vector_env:VAPVectorEnv",
            kwargs=dict(kwargs),
        )
