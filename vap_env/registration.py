"""Declarative registration of the vap-env environments with Gymnasium.

The entry points are strings, so registering imports neither torch nor pybullet. Gymnasium >= 1.0
dropped plugin entry points; ``gym.make("vap_env:VAP-RT1-v0")`` imports this package on demand.
"""

from __future__ import annotations

import gymnasium

# env id -> (keyword arguments of VAPEnv / VAPVectorEnv (the env preset in configs/env/),
#            max_episode_steps: gym.make wraps it in TimeLimit, make_vec passes it to VAPVectorEnv)
ENV_IDS: dict[str, tuple[dict[str, str], int]] = {
    "VAP-RT1-v0": ({"preset": "rt1"}, 10),  # 10 chunks of 8 frames at 3 Hz: 27 s
    "VAP-DROID-v0": ({"preset": "droid"}, 20),  # 20 chunks of 8 frames at 15 Hz: 11 s
}

# RLDS dataset name -> the env whose robot and camera it was recorded with
DATASET_ENVS: dict[str, str] = {
    "fractal20220817_data": "VAP-RT1-v0",
    "droid": "VAP-DROID-v0",
    "droid_100": "VAP-DROID-v0",
}


def env_for_dataset(dataset_name: str) -> str:
    """The env id that replays episodes of the RLDS dataset ``dataset_name`` (``DATASET_ENVS``)."""
    if dataset_name not in DATASET_ENVS:
        raise ValueError(
            f"no env for dataset {dataset_name!r} (known: {sorted(DATASET_ENVS)}): pass env_id"
        )
    return DATASET_ENVS[dataset_name]


def register_envs() -> None:
    """Register every id in ``ENV_IDS`` (idempotent)."""
    for env_id, (kwargs, max_episode_steps) in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="vap_env.env:VAPEnv",
            vector_entry_point="vap_env.vector_env:VAPVectorEnv",
            kwargs=dict(kwargs),
            max_episode_steps=max_episode_steps,
            # Gymnasium's PassiveEnvChecker marks reset as checked before calling it: after a
            # first reset that raises (say, a misspelt option), every later step fails inside the
            # checker ("cannot unpack non-iterable NoneType"). The tests run the full check_env.
            disable_env_checker=True,
        )
