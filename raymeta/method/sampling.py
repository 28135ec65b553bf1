"""Which configurations a training step samples, and the coordinate noise each one draws.

Every draw is a pure function of the run's seed and the step (see :func:`raymeta.seeds.derive_seed`): every
worker of a distributed run draws the same M configurations, and a resumed run draws what the unbroken run
drew.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from raymeta.errors import ConfigError
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import hidden_width
from raymeta.method.widths import Gamma
from raymeta.seeds import derive_seed


def pool_widths(pool: list[float], reference_width: int) -> list[int]:
    """The hidden widths of a block of width ``reference_width`` whose γ lies inside the training pool.

    A pool narrower than one channel step holds no whole width: then the width nearest its low end.
    """
    low, high = pool
    narrowest = math.ceil((1 - high) * reference_width - 1e-9)
    widest = math.floor((1 - low) * reference_width + 1e-9)
    if narrowest > widest:
        return [hidden_width(reference_width, low)]
    return list(range(max(1, narrowest), widest + 1))


def sample_gammas(
    seed: int, step: int, count: int, pool: list[float], reference_width: int, sandwich: bool = False
) -> list[float]:
    """The M compression ratios of optimiser step ``step``: γ = 0 first (when M ≥ 2), the rest drawn from the pool.

    Each drawn configuration is a hidden width h, a uniform integer over :func:`pool_widths` of the widest
    metamorphic block (C = ``reference_width``), and γ = 1 − h/C, as NeuMeta's code draws
    ``random.choice(dimensions)``. So γ = 0, the one configuration with a reconstruction term, comes up in
    1/(number of widths) of the draws even with M = 1; a continuous uniform γ would almost never be 0.

    With ``sandwich`` (US-Nets' sandwich rule), the second configuration (when M ≥ 2) is the narrowest width of
    the pool: every step then trains both ends of the pool, the widest being γ = 0.
    """
    rng = np.random.default_rng(derive_seed(seed, "configurations", step))
    widths = pool_widths(pool, reference_width)
    gammas = [1.0 - widths[int(i)] / reference_width for i in rng.integers(0, len(widths), size=count)]
    if count >= 2:
        gammas[0] = 0.0
        if sandwich:
            gammas[1] = 1.0 - widths[0] / reference_width
    return gammas


def sample_configurations(
    seed: int,
    step: int,
    count: int,
    pool: list[float],
    reference_width: int,
    sampling: str = "uniform",
    blocks: int = 1,
    sandwich: bool = False,
) -> list[Gamma]:
    """The M configurations of optimiser step ``step``: :func:`sample_gammas` (uniform γ) or, with ``sampling`` =
    per_block, one γ per metamorphic block (``blocks`` of them), each drawn independently on the same grid of
    widths, with every block at γ = 0 first (when M ≥ 2); ``sandwich``: every block at the pool's narrowest width
    second (when M ≥ 2), as in :func:`sample_gammas`."""
    if sampling == "uniform":
        return sample_gammas(seed, step, count, pool, reference_width, sandwich)
    if sampling != "per_block":
        raise ConfigError(f"train.gamma_sampling={sampling!r} is not allowed: uniform or per_block")
    rng = np.random.default_rng(derive_seed(seed, "configurations", step))
    widths = pool_widths(pool, reference_width)
    draws = rng.integers(0, len(widths), size=(count, blocks))
    configurations: list[Gamma] = [tuple(1.0 - widths[int(i)] / reference_width for i in row) for row in draws]
    if count >= 2:
        configurations[0] = (0.0,) * blocks
        if sandwich:
            configurations[1] = (1.0 - widths[0] / reference_width,) * blocks
    return configurations


def reference_width(net: MetamorphicNetwork) -> int:
    """The width of the widest metamorphic block: its hidden widths are the grid γ is drawn on."""
    return max(net.arch.widths[s] for s, _ in net.blocks)


def noise_generator(seed: int, step: int, config_index: int) -> torch.Generator:
    """Coordinate noise of configuration ``config_index`` of step ``step``, independent of which worker runs it."""
    return torch.Generator().manual_seed(derive_seed(seed, "coordinate-noise", step, config_index))
