"""A run's identity in the results tables, from its configuration: what every result row of it repeats."""

from __future__ import annotations

from raymeta.config.schema import Config, method_name
from raymeta.io.results import RunIdentity
from raymeta.method.models import TORCHVISION_RESNETS


def architecture_name(config: Config) -> str:
    """E.g. ``resnet20-16-32-64`` (a CIFAR ResNet) or ``resnet50`` / ``resnet50-8-1-1-1-1`` (torchvision's, and a
    smaller one of its family: base width, blocks per stage): the results tables' ``architecture`` column."""
    model = config.model
    if model.family == "cifar":
        return f"resnet{model.depth}-" + "-".join(str(w) for w in model.widths)
    if model.base_width is None and model.stage_blocks is None:
        return model.family
    blocks = model.stage_blocks or TORCHVISION_RESNETS[model.family][1]
    return f"{model.family}-{model.base_width or 64}-" + "-".join(str(n) for n in blocks)


CALIBRATED = "+calibrated"
"""What a method's name gains on rows of networks calibrated with ``eval.calibration``: rows of their own."""


def calibrated_method(method: str, config: Config) -> str:
    """``method``, with :data:`CALIBRATED` appended when ``config`` evaluates with ``eval.calibration``."""
    return method + CALIBRATED if config.eval.calibration > 0 else method


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
