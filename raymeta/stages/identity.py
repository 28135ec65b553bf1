"""A run's identity in the results tables, from its configuration: what every result row of it repeats."""

from __future__ import annotations

from raymeta.config.schema import Config, method_name
from raymeta.io.results import RunIdentity


def architecture_name(config: Config) -> str:
    """E.g. ``resnet20-16-32-64``: the results tables' ``architecture`` column."""
    return f"resnet{config.model.depth}-" + "-".join(str(w) for w in config.model.widths)


def run_identity(
    config: Config, *, run_id: str, dataset: str, method: str | None = None, config_hash: str | None = None
) -> RunIdentity:
    """The :class:`RunIdentity` of rows measured for ``config``'s run: ``method`` defaults to the run's own
    (:func:`raymeta.config.method_name`) and ``config_hash`` to ``config.hash()`` (a baseline passes the hash of
    its own settings, which its resume matches on)."""
    return RunIdentity(
        run_id=run_id,
        method=method or method_name(config),
        config_hash=config_hash or config.hash(),
        dataset=dataset,
        architecture=architecture_name(config),
        gamma_pool=tuple(float(g) for g in config.train.gamma_pool),
    )
