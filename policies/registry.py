"""Policy names -> classes, imported lazily (the SB3 adapter pulls in stable-baselines3 only when used).

Each policy class has a frozen ``config_class`` dataclass for its plain settings (seed, chunk
size, noise level, checkpoint path...) and takes its run-time objects (an action space, an episode,
an inner policy) as constructor arguments. ``make_policy`` accepts both as keywords and routes
each to its place, so ``make_policy("replay", episode=ep, chunk_size=8)`` works and a typo raises
an error with a "did you mean".
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

from policies.base import Policy
from vap_env.config import did_you_mean, from_dict

# name -> "module:Class"
POLICIES: dict[str, str] = {
    "random": "policies.random_policy:RandomPolicy",
    "replay": "policies.replay:ReplayPolicy",
    "scripted": "policies.scripted:ScriptedPolicy",
    "sb3": "policies.sb3:SB3Policy",
    "single_action": "policies.single_action:SingleActionPolicy",
}


def available_policies() -> list[str]:
    """Names accepted by ``make_policy``."""
    return sorted(POLICIES)


def policy_class(name: str) -> type:
    """Import and return the class registered as ``name``."""
    if name not in POLICIES:
        names = available_policies()
        raise KeyError(f"unknown policy {name!r}; available: {names}.{did_you_mean(name, names)}")
    module, _, cls = POLICIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Build the policy ``name``: config fields go into its config, the rest to its constructor.

    ``cfg=<config instance>`` may be passed instead of individual config fields.
    """
    cls = policy_class(name)
    config_fields = {f.name for f in dataclasses.fields(cls.config_class)}
    params = inspect.signature(cls.__init__).parameters
    runtime = {p for p in params if p not in ("self", "cfg")}
    unknown = sorted(set(kwargs) - config_fields - runtime - {"cfg"})
    if unknown:
        allowed = sorted(config_fields | runtime)
        hints = "".join(did_you_mean(k, allowed) for k in unknown)
        raise KeyError(
            f"policy {name!r}: unknown argument(s) {unknown}; allowed: {allowed}.{hints}"
        )
    cfg_kwargs = {k: v for k, v in kwargs.items() if k in config_fields}
    if "cfg" in kwargs:
        if cfg_kwargs:
            raise ValueError(
                f"policy {name!r}: pass either cfg= or config fields {sorted(cfg_kwargs)}, not both"
            )
        cfg = kwargs["cfg"]
    else:
        cfg = from_dict(cls.config_class, cfg_kwargs, where=f"policy {name!r}")
    return cls(**{k: v for k, v in kwargs.items() if k in runtime}, cfg=cfg)
