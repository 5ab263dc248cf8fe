"""Policies for vap-env: the ``Policy`` protocol, a registry of names, and the shipped policies.

``make_policy(name, **kwargs)`` builds one by name (``available_policies()`` lists them); the
modules behind the names are imported on first use, so importing this package is cheap.
"""

from policies.base import Policy, as_chunk
from policies.registry import POLICIES, available_policies, make_policy, policy_class

__all__ = ["POLICIES", "Policy", "as_chunk", "available_policies", "make_policy", "policy_class"]
