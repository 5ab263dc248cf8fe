"""Subcommands of the ``vap-env`` CLI: each module defines ``Config`` and ``main(cfg)``."""
