"""Typed configuration: one dataclass per concern, loaded from YAML, overridable as ``group.field=value``.

- :mod:`raymeta.config.schema`: the groups, every field with its docstring and checks, ``Config`` and its hash
  (what the hash leaves out is marked on each field);
- :mod:`raymeta.config.loading`: YAML files with ``extends:``, overrides, type checks, ``load_config``;
- :mod:`raymeta.config.migration`: the configuration stored in a checkpoint, with the rule for old ones;
- :mod:`raymeta.config.docs`: the field docstrings, for the command line's flags and ``--help``.

The method presets (``--method``) are plain data in :mod:`raymeta.method.presets`; saving a config to a run
folder is :func:`raymeta.io.files.save_config`.
"""
