"""Per-block compression ratios: a configuration of a metamorphic network is one γ per metamorphic block.

A configuration is either one number (uniform γ, every block at the same ratio: the common case and the
default everywhere) or a sequence of numbers, one per metamorphic block in ``train.blocks`` order (per-block γ,
"mix and match"). Everything that takes a γ (generation, evaluation, export, parameter and MAC counts) takes
either; :func:`block_gammas` is the one place that turns a configuration into the γ of each block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from raymeta.errors import ConfigError

Gamma = float | tuple[float, ...]
"""A configuration: a uniform γ, or one γ per metamorphic block (in ``train.blocks`` order)."""


def block_gammas(gamma, block_names: Sequence[str]) -> list[float]:
    """The γ of each block named in ``block_names`` (``train.blocks`` order) under configuration ``gamma``.

    A number applies to every block; a sequence must hold exactly one number per block. Range checks (γ in
    [-1, 1), a width that rounds to no channel) are :func:`raymeta.method.models.hidden_width`'s.
    """
    if isinstance(gamma, bool):
        raise ConfigError(f"compression ratio γ must be a number or one number per block, got {gamma!r}")
    if isinstance(gamma, (int, float)):
        return [float(gamma)] * len(block_names)
    if isinstance(gamma, str) or not isinstance(gamma, Sequence):
        raise ConfigError(f"compression ratio γ must be a number or one number per block, got {gamma!r}")
    values = list(gamma)
    if len(values) != len(block_names):
        raise ConfigError(
            f"per-block γ {format_gamma(values)} has {len(values)} value(s) but the network has "
            f"{len(block_names)} metamorphic block(s) ({', '.join(block_names)}): give one γ per block, "
            f"in that order, or one γ for all"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"per-block γ {values!r}: every entry must be a finite number, got {value!r}")
    return [float(value) for value in values]


def canonical(gamma) -> Gamma:
    """A float for a uniform configuration (a sequence of equal values collapses to it), else a tuple."""
    if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
        return float(gamma)
    values = tuple(float(value) for value in gamma)
    if values and all(value == values[0] for value in values):
        return values[0]
    return values


def is_uniform(gamma) -> bool:
    return isinstance(canonical(gamma), float)


def parse_gamma(text: str, option: str = "--gamma") -> Gamma:
    """``"0.25"`` → 0.25; ``"0.25,0.5"`` → (0.25, 0.5) (one γ per metamorphic block, ``train.blocks`` order)."""
    parts = [part for part in str(text).replace(" ", "").split(",") if part]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"{option}={text!r} is not allowed: a number (uniform γ, e.g. 0.25) or one number per "
            f"metamorphic block, comma-separated (e.g. 0.25,0.5)"
        ) from None
    if not values:
        raise ConfigError(f"{option}={text!r} names no γ")
    return values[0] if len(values) == 1 else tuple(values)


def format_gamma(gamma) -> str:
    """``0.25`` → ``"0.25"``; ``(0.25, 0.5)`` → ``"0.25,0.5"`` (what :func:`parse_gamma` reads back)."""
    if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
        return f"{gamma:g}"
    return ",".join(f"{value:g}" for value in gamma)
