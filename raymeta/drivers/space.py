"""Search spaces: the YAML files under ``tune_spaces/`` that say what a sweep explores.

A file names the parameters to vary (``train.*`` and ``inr.*`` keys of the job config, each with a
distribution), optionally named *variants* (whole sets of overrides, run as a grid: the ablation rows of
paper Table 1), how to search (random, grid, Optuna), the early-stopping scheduler and the trial count.
Every distribution is checked against the configuration at its bounds (or at every option), so a bad file
fails at load time with one message naming the file, the key and what is allowed. See
``tune_spaces/README.md`` for the format.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from raymeta.config.loading import config_from_dict
from raymeta.config.schema import Config, INRConfig, TrainConfig
from raymeta.errors import ConfigError

TUNABLE_GROUPS = {"train": TrainConfig, "inr": INRConfig}
"""The groups a sweep may vary: every trial shares one prior, so data, model and pretraining are fixed."""

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "lograndint", "choice", "grid", "value")
SEARCHES = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "fifo")
TOP_KEYS = ("description", "search", "num_samples", "max_concurrent_trials", "seed", "scheduler", "params", "variants")
SCHEDULER_KEYS = ("name", "grace_period", "reduction_factor", "max_t")
VARIANT_PARAM = "variant"
"""The trial parameter that names the variant (``param.variant`` in result tables)."""


class SpaceError(ConfigError):
    """A search-space file is missing, does not parse, or declares something not allowed."""


@dataclass(frozen=True)
class Param:
    """One varied configuration key and its distribution."""

    key: str
    kind: str
    values: tuple

    @property
    def searched(self) -> bool:
        return self.kind != "value"

    def candidates(self) -> list:
        """The values a validation tries: the bounds of a range, every option of a list, the constant."""
        if self.kind in ("loguniform", "uniform", "randint", "lograndint"):
            return list(self.values)
        return list(self.values) if self.kind in ("choice", "grid") else [self.values[0]]

    def domain(self):
        """The Ray Tune domain of this parameter."""
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "randint":  # inclusive in the file, exclusive upper bound in Tune
            return tune.randint(self.values[0], self.values[1] + 1)
        if self.kind == "lograndint":
            return tune.lograndint(self.values[0], self.values[1] + 1)
        options = [_tune_value(v) for v in self.values]
        if self.kind == "grid":
            return tune.grid_search(options)
        if self.kind == "choice":
            return tune.choice(options)
        return options[0]


@dataclass
class SearchSpace:
    """A validated search-space file."""

    path: Path
    name: str
    description: str = ""
    search: str = "random"
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    seed: int = 0
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None
    params: dict[str, Param] = field(default_factory=dict)
    variants: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def searched_params(self) -> list[str]:
        """Trial parameters that differ between trials (the ``param.*`` columns of the results)."""
        names = [key for key, param in self.params.items() if param.searched]
        return ([VARIANT_PARAM] if self.variants else []) + names

    def param_space(self) -> dict:
        """Ray Tune's ``param_space``: one entry per parameter, keyed by its dotted config key."""
        from ray import tune

        space = {key: param.domain() for key, param in self.params.items()}
        if self.variants:
            names = list(self.variants)
            space[VARIANT_PARAM] = tune.choice(names) if self.search == "optuna" else tune.grid_search(names)
        return space

    def overrides(self, params: dict) -> dict[str, object]:
        """The config overrides of one trial: its variant's set first, then the sampled parameters."""
        out: dict[str, object] = {}
        if self.variants:
            name = params.get(VARIANT_PARAM)
            if name not in self.variants:
                raise SpaceError(f"{self.path}: trial variant {name!r} is not one of {', '.join(self.variants)}")
            out.update(self.variants[name])
        for key in self.params:
            if key in params:
                out[key] = _from_tune_value(params[key])
        return out

    def grid_size(self) -> int:
        """Trials per repetition of the grid (1 without grid parameters)."""
        size = len(self.variants) or 1
        for param in self.params.values():
            if param.kind == "grid":
                size *= len(param.values)
        return size

    def trial_count(self) -> int:
        """How many trials the sweep runs: num_samples × the grid (Optuna: num_samples)."""
        return self.num_samples if self.search == "optuna" else self.num_samples * self.grid_size()

    def fingerprint(self) -> str:
        """What decides a sweep's trials (everything but the description), for the resume check."""
        content = {
            key: value
            for key, value in dataclasses.asdict(self).items()
            if key not in ("path", "name", "description", "max_concurrent_trials")
        }
        return json.dumps(content, sort_keys=True, default=str)


def _tune_value(value):
    """Tune and Optuna want hashable scalars: a list option (e.g. a block list) travels as a tuple."""
    return tuple(value) if isinstance(value, list) else value


def _from_tune_value(value):
    return list(value) if isinstance(value, tuple) else value


def _field_type(key: str, where: str):
    group, _, name = key.partition(".")
    if group not in TUNABLE_GROUPS or not name:
        raise SpaceError(
            f"{where}: key {key!r} is not allowed: a sweep shares one prior, so it may vary "
            f"{' and '.join(g + '.*' for g in TUNABLE_GROUPS)} keys only (data, model, pretrain, "
            f"smooth, seed and eval are fixed by the job config)"
        )
    hints = typing.get_type_hints(TUNABLE_GROUPS[group])
    if name not in hints:
        raise SpaceError(f"{where}: unknown key {key!r}; allowed keys in {group}: {', '.join(hints)}")
    return hints[name]


def _is_int_type(annotation) -> bool:
    """int, or int | None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return int in typing.get_args(annotation)
    return annotation is int


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(value):
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parse_param(key: str, spec, where: str) -> Param:
    annotation = _field_type(key, where)
    if not isinstance(spec, dict):
        return Param(key, "value", (spec,))
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise SpaceError(
            f"{where}: {key} must be a value or a mapping with one of {', '.join(DISTRIBUTIONS)}, "
            f"e.g. {{loguniform: [1e-4, 1e-2]}}; got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if kind == "value":
        return Param(key, kind, (values,))
    if kind in ("choice", "grid"):
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: {key}: {kind} needs a non-empty list of options, got {values!r}")
        return Param(key, kind, tuple(_as_number(v) for v in values))
    if not isinstance(values, list) or len(values) != 2:
        raise SpaceError(f"{where}: {key}: {kind} needs [low, high], got {values!r}")
    low, high = (_as_number(v) for v in values)
    if not (_number(low) and _number(high)) or not low < high:
        raise SpaceError(f"{where}: {key}: {kind} [{low!r}, {high!r}] is not allowed: two numbers with low < high")
    integer = _is_int_type(annotation)
    if kind in ("randint", "lograndint"):
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SpaceError(f"{where}: {key}: {kind} [{low}, {high}] needs integer bounds")
    elif integer:
        raise SpaceError(f"{where}: {key} is an integer setting: use randint or lograndint, not {kind}")
    if kind in ("loguniform", "lograndint") and low <= 0:
        raise SpaceError(f"{where}: {key}: {kind} [{low}, {high}] needs a positive lower bound")
    return Param(key, kind, (low, high))


def apply_overrides(base: dict, overrides: dict[str, object]) -> Config:
    """The configuration ``base`` (a config dict, left unchanged) with ``group.key`` overrides, validated."""
    tree = json.loads(json.dumps(base))
    for key, value in overrides.items():
        group, _, name = key.partition(".")
        tree.setdefault(group, {})[name] = value
    return config_from_dict(tree)


def _check_values(base: dict, overrides: dict[str, object], where: str) -> None:
    """Build the configuration with these overrides; a value the config refuses is an error naming it."""
    try:
        apply_overrides(base, overrides)
    except ConfigError as error:
        raise SpaceError(f"{where}: {error}") from None


def load_space(path: str | Path, base: Config | None = None) -> SearchSpace:
    """Read and validate a search-space file against ``base`` (the job config; defaults without one)."""
    path = Path(path)
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (files in {path.parent}: {', '.join(found)})" if found else ""
        raise SpaceError(f"search space {path} does not exist{hint}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpaceError(f"search space {path} does not parse as YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"search space {path} must be a mapping with keys {', '.join(TOP_KEYS)}")
    where = str(path)
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(TOP_KEYS)}")
    space = SearchSpace(path=path, name=path.stem, description=str(raw.get("description") or "").strip())

    search = raw.get("search", "random")
    if search not in SEARCHES:
        raise SpaceError(f"{where}: search={search!r} is not allowed: use {', '.join(SEARCHES)}")
    space.search = search
    for key in ("num_samples", "max_concurrent_trials", "seed"):
        value = raw.get(key, getattr(space, key))
        minimum = 0 if key == "seed" else 1
        if value is None and key == "max_concurrent_trials":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SpaceError(
                f"{where}: {key}={value!r} is not allowed: an integer ≥ {minimum}"
                + (" or null (as many as the cluster fits)" if key == "max_concurrent_trials" else "")
            )
        setattr(space, key, value)

    scheduler = raw.get("scheduler", {}) or {}
    if isinstance(scheduler, str):
        scheduler = {"name": scheduler}
    if not isinstance(scheduler, dict):
        raise SpaceError(f"{where}: scheduler must be asha, fifo or a mapping with keys {', '.join(SCHEDULER_KEYS)}")
    unknown = sorted(set(scheduler) - set(SCHEDULER_KEYS))
    if unknown:
        raise SpaceError(f"{where}: unknown key scheduler.{unknown[0]}; allowed: {', '.join(SCHEDULER_KEYS)}")
    space.scheduler = scheduler.get("name", "asha")
    if space.scheduler not in SCHEDULERS:
        raise SpaceError(f"{where}: scheduler.name={space.scheduler!r} is not allowed: use {', '.join(SCHEDULERS)}")
    grace = scheduler.get("grace_period", 1)
    if not isinstance(grace, int) or isinstance(grace, bool) or grace < 1:
        raise SpaceError(f"{where}: scheduler.grace_period={grace!r} is not allowed: a positive number of epochs")
    factor = scheduler.get("reduction_factor", 2)
    if not _number(factor) or factor <= 1:
        raise SpaceError(f"{where}: scheduler.reduction_factor={factor!r} is not allowed: a number > 1")
    max_t = scheduler.get("max_t")
    if max_t is not None and (not isinstance(max_t, int) or isinstance(max_t, bool) or max_t < grace):
        raise SpaceError(
            f"{where}: scheduler.max_t={max_t!r} is not allowed: null (the longest trial's epochs) "
            f"or an integer ≥ grace_period ({grace})"
        )
    space.grace_period, space.reduction_factor, space.max_t = grace, float(factor), max_t

    params = raw.get("params", {}) or {}
    if not isinstance(params, dict):
        raise SpaceError(f"{where}: params must map config keys (e.g. train.lr) to distributions")
    for key, spec in params.items():
        space.params[str(key)] = _parse_param(str(key), spec, f"{where}: params")
    variants = raw.get("variants", {}) or {}
    if not isinstance(variants, dict):
        raise SpaceError(
            f"{where}: variants must map names to sets of overrides, e.g. neumeta: {{train.incremental: false}}"
        )
    for name, overrides in variants.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+\- ]*", name):
            raise SpaceError(f"{where}: variant name {name!r} is not allowed: letters, digits, space, _ . + -")
        if not isinstance(overrides, dict):
            raise SpaceError(f"{where}: variants.{name} must map config keys to values, got {overrides!r}")
        for key, value in overrides.items():
            _field_type(str(key), f"{where}: variants.{name}")
            if isinstance(value, dict):
                raise SpaceError(
                    f"{where}: variants.{name}.{key} must be a plain value (distributions go under params)"
                )
        clash = sorted(set(overrides) & {k for k, p in space.params.items() if p.searched})
        if clash:
            raise SpaceError(f"{where}: variants.{name} sets {clash[0]}, which params also varies: set it in one place")
        space.variants[name] = {str(k): v for k, v in overrides.items()}
    if not space.params and not space.variants:
        raise SpaceError(f"{where}: the space varies nothing: give params and/or variants")

    check_search(space, f"{where}: search={search}")
    _validate_values(space, (base or Config()).to_dict())
    return space


def check_search(space: SearchSpace, where: str) -> None:
    """Grid search runs every combination, so it takes grid and value parameters only; Optuna takes no grid."""
    for key, param in space.params.items():
        if space.search == "grid" and param.kind not in ("grid", "value"):
            raise SpaceError(
                f"{where}: grid search runs every combination, so every parameter must be grid or "
                f"value; {key} is {param.kind}"
            )
        if space.search == "optuna" and param.kind == "grid":
            raise SpaceError(f"{where}: Optuna cannot run a grid ({key} is grid): use choice, or search=random/grid")


def _validate_values(space: SearchSpace, base: dict) -> None:
    """Every candidate value of every parameter, in every variant, gives a configuration the config accepts."""
    where = str(space.path)
    variants = space.variants.items() or [(None, {})]
    for name, fixed in variants:
        at = f"{where}: variants.{name}" if name else where
        _check_values(base, fixed, at)
        constants = {k: p.values[0] for k, p in space.params.items() if not p.searched}
        _check_values(base, {**fixed, **constants}, at)
        for key, param in space.params.items():
            for value in param.candidates():
                _check_values(base, {**fixed, **constants, key: value}, f"{at}: params.{key}={value!r}")


def max_total_epochs(space: SearchSpace, base: Config, block_count) -> int:
    """The longest trial in epochs (stages × epochs per stage), ASHA's default ``max_t``.

    ``block_count(config)`` counts a configuration's metamorphic blocks.
    """

    def options(key: str, fixed: dict) -> list:
        if key in fixed:
            return [fixed[key]]
        if key in space.params:
            return space.params[key].candidates()
        group, _, name = key.partition(".")
        return [getattr(getattr(base, group), name)]

    longest = 1
    for fixed in space.variants.values() or [{}]:
        for epochs, blocks in itertools.product(
            options("train.epochs_per_stage", fixed), options("train.blocks", fixed)
        ):
            trial = dataclasses.replace(base, train=dataclasses.replace(base.train, blocks=list(blocks)))
            longest = max(longest, int(epochs) * block_count(trial))
    return longest
