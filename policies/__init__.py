"""Policies for vap-env: the ``Policy`` protocol, a registry of names, and the shipped policies."""
