"""vap-env: a robot-learning world-model simulator packaged as a Gymnasium environment.

Importing this package only registers the environments (string entry points, no torch import), so
``import vap_env; gym.make("VAP-RT1-v0")`` is cheap until the env is actually built.
"""

from vap_env.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]
