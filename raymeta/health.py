"""Health signals of a metamorphic network: are its generated blocks the prior's, and are they in use?

The method's premise is that the INRs reproduce the prior's (smoothed, BN-folded) blocks at γ = 0 and that
the residual scales α let those blocks carry the network. These functions measure both, so that monitor
rows, progress lines and reports can show a block that has switched itself off (α ≈ 0) or an INR that
generates nothing like the prior (relative error ≥ 1: no closer than generating zeros).
"""

from __future__ import annotations

import torch

from raymeta.metamorphic import MetamorphicNetwork
from raymeta.models import block_name


@torch.no_grad()
def reconstruction_errors(net: MetamorphicNetwork) -> dict[str, float]:
    """Relative RMS error ‖W_gen − W_prior‖ / ‖W_prior‖ of every active generated tensor at γ = 0 (noise-free
    coordinates), keyed by the tensor's module path (``stages.2.1.conv1.weight``). 0 is a perfect copy of the
    prior; 1 is what generating zeros scores."""
    generated = net.generate(0.0)
    errors = {}
    for name, target in net.prior_tensors().items():
        target = target.to(generated[name].device)
        scale = target.norm().clamp_min(1e-12)
        errors[name] = float((generated[name] - target).norm() / scale)
    return errors


def block_alphas(net: MetamorphicNetwork) -> dict[str, float]:
    """The residual scale α of every active metamorphic block, keyed by its name (``stage3.block1``)."""
    return {block_name(s, b): float(net.alphas[i].detach()) for i, (s, b) in enumerate(net.active())}
