"""Health signals of a metamorphic network: are its generated blocks the prior's, and are they in use?

The method's premise is that the INRs reproduce the prior's (smoothed, BN-folded) blocks at γ = 0 and that
the residual scales α let those blocks carry the network. These functions measure both, so that monitor
rows, progress lines and reports can show a block that has switched itself off (α ≈ 0) or an INR that
generates nothing like the prior (relative error ≥ 1: no closer than generating zeros).
"""

from __future__ import annotations

import math

import torch

from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import block_name, block_of_path
from raymeta.method.objective import relative_squared_error


@torch.no_grad()
def reconstruction_errors(net: MetamorphicNetwork) -> dict[str, float]:
    """Relative RMS error ‖W_gen − W_prior‖ / ‖W_prior‖ of every active generated tensor at γ = 0 (noise-free
    coordinates), keyed by the tensor's module path (``stages.2.1.conv1.weight``). 0 is a perfect copy of the
    prior; 1 is what generating zeros scores. The square root of the training objective's relative error."""
    generated = net.generate(0.0)
    return {
        name: float(relative_squared_error(generated[name], target.to(generated[name].device)).sqrt())
        for name, target in net.prior_tensors().items()
    }


def block_alphas(net: MetamorphicNetwork) -> dict[str, float]:
    """The residual scale α of every active metamorphic block, keyed by its name (``stage3.block1``)."""
    return {block_name(s, b): float(net.alphas.detach()[i]) for i, (s, b) in enumerate(net.active())}


def worst_by_block(errors: dict[str, float]) -> dict[str, float]:
    """The largest of :func:`reconstruction_errors` over each block's tensors, keyed by block name, in the order
    the tensors come. NaN (a diverged INR) wins over any number, so that it is never hidden."""
    worst: dict[str, float] = {}
    for path, error in errors.items():
        name = block_name(*block_of_path(path))  # stages.{s}.{b}.conv1.weight, layer{s+1}.{b}.conv1.weight
        previous = worst.get(name, -math.inf)
        worst[name] = error if math.isnan(error) or error > previous else previous
    return worst
