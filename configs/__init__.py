"""Named presets as YAML: ``configs/<group>/<name>.yaml``, each the serialisation of one frozen dataclass.

Load them with ``vap_env.config.load_preset(group, name, cls)``.
"""
