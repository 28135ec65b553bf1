"""Reading a configuration: YAML files (one may start from another with ``extends:``), ``group.key=value``
overrides, each value checked (and lightly converted) against its field's type, then the schema's own checks.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

from raymeta.config.schema import Config
from raymeta.errors import ConfigError
from raymeta.method.presets import preset


def _coerce(value, annotation, key: str):
    """Check (and lightly convert) a YAML value against a field's type; raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and item_type is str:
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}={value!r} is not allowed: expected a list of {item_type.__name__}")
        return [_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} is not allowed: expected true or false")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} is not allowed: expected an integer")
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ConfigError(f"{key}={value!r} is not allowed: expected a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}={value!r} is not allowed: expected a string")
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _build(cls, values, prefix: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; allowed keys here: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in values:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(values[name], hints[name], key)
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    return _build(Config, values, "")


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is not a group")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """``train.lr=1e-3`` → ("train.lr", 0.001); the value is read as YAML (so lists and null work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not allowed: expected group.key=value, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value does not parse as YAML ({error})") from None
    return key.strip(), value


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A config file's values, with the file it ``extends:`` (a path relative to it) underneath, recursively."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (f" (extended by {chain[-1]})" if chain else ""))
    if path.resolve() in chain:
        raise ConfigError(f"config file {path} extends itself through {' → '.join(map(str, chain))}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of groups, got {type(values).__name__}")
    parent = values.pop("extends", None)
    if parent is None:
        return values
    if not isinstance(parent, str):
        raise ConfigError(f"extends={parent!r} in {path} is not allowed: the path of another config file")
    return _merge(_read_yaml(path.parent / parent, (*chain, path.resolve())), values)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults), apply ``group.key=value`` overrides, validate. A file may start
    from another with ``extends: OTHER.yaml`` (relative to it) and change only what differs."""
    values: dict = {}
    if path is not None:
        path = Path(path) if isinstance(path, str) else path  # a Path, or a file on object storage (its read_text)
        values = _read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(values, key, value)
    try:
        return config_from_dict(values)
    except ConfigError as error:
        sources = ([str(path)] if path is not None else []) + (["command-line overrides"] if overrides else [])
        where = f" (from {' + '.join(sources)})" if sources else ""
        raise ConfigError(f"{error}{where}") from None


def method_overrides(method: str) -> list[str]:
    """The ``group.key=value`` overrides of a ``--method``: raymeta (none), recipe (the papers' method with the
    full recipe's switches as configured), neumeta (the papers' method with every recipe switch off)."""
    return [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in preset(method).items()
    ]
