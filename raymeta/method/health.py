"""Health signals of a metamorphic network: are its generated blocks the prior's, and are they in use?

The method's premise is that the INRs reproduce the prior's (smoothed, BN-folded) blocks at γ = 0 and that
the residual scales α let those blocks carry the network. These functions measure both, so that monitor
rows, progress lines and reports can show a block that has switched itself off (α ≈ 0) or an INR that
generates nothing like the prior (relative error ≥ 1: no closer than generating zeros), and whether the
reconstruction term can pull a generated tensor towards the prior at all against the regulariser
(:func:`loss_balance`: a ratio below 1 means the regulariser wins, and zero is the minimiser of the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import block_name, block_of_path
from raymeta.method.objective import Objective, reconstruction_error, relative_squared_error, weight_regulariser


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


@dataclass(frozen=True)
class LossBalance:
    """The reconstruction pull against the regulariser pull on every active generated tensor at γ = 0, keyed by
    the tensor's module path: ``ratio`` at the current weights, ``at_zero`` at W = 0 (the issue's threshold form).
    Both are empty when the objective has no regulariser (λ_reg = 0: nothing pulls against the reconstruction)."""

    ratio: dict[str, float]
    at_zero: dict[str, float]


def loss_balance(net: MetamorphicNetwork, objective: Objective, configs_per_step: int) -> LossBalance:
    """pull_rec / pull_reg of every generated tensor W at γ = 0 (noise-free), as the training objective weighs
    them (:func:`raymeta.method.objective.configuration_loss`).

    pull_rec = ‖λ_rec·∂rec/∂W‖ with rec the objective's own reconstruction term (the mean over the T active
    tensors of each one's MSE, or relative error); pull_reg = M·‖λ_reg·∂‖W‖/∂W‖ = M·λ_reg whatever W's size: a
    step regularises every one of its M configurations (``configs_per_step``) and supervises the reconstruction
    on one (γ = 0 comes first; both terms are scaled by 1/M alike, which cancels). A draw that lands on γ = 0
    again adds a reconstruction pull this leaves out. Below 1 the regulariser wins: the sum rec + M·λ_reg·‖W‖
    is smallest nearer zero than the prior.

    ``at_zero`` is the same ratio at W = 0, where the reconstruction pulls with 2·‖W*‖/(T·N) (MSE; N elements,
    prior W*) or 2/(T·‖W*‖) (relative), and the regulariser's subgradients fill the ball of radius M·λ_reg:
    at or below 1, W = 0 is exactly the minimiser of rec + reg, and the tensor is learned, if at all, through
    the task loss alone.
    """
    if objective.lambda_reg <= 0:
        return LossBalance({}, {})
    targets = net.prior_tensors()
    with torch.no_grad():
        generated = net.generate(0.0)
    targets = {name: target.to(generated[name].device).float() for name, target in targets.items()}
    names = list(targets)

    def rec_pulls(weights: dict[str, torch.Tensor]) -> list[float]:
        loss = objective.lambda_rec * reconstruction_error(weights, targets, relative=objective.relative_reconstruction)
        return [float(g.norm()) for g in torch.autograd.grad(loss, [weights[n] for n in names])]

    with torch.enable_grad():  # the gradients of the two terms alone, also when called under no_grad
        current = {name: generated[name].detach().float().requires_grad_() for name in names}
        regulariser = objective.lambda_reg * weight_regulariser(current)
        reg_grads = torch.autograd.grad(regulariser, [current[n] for n in names])
        full = configs_per_step * objective.lambda_reg  # the largest pull of M·λ_reg·‖W‖, held at W = 0
        reg_pulls = [
            configs_per_step * float(g.norm()) if float(current[n].detach().norm()) > 0 else full
            for n, g in zip(names, reg_grads, strict=True)
        ]
        zeros = {name: torch.zeros_like(target, requires_grad=True) for name, target in targets.items()}
        return LossBalance(
            ratio={n: pull / reg for n, pull, reg in zip(names, rec_pulls(current), reg_pulls, strict=True)},
            at_zero={n: pull / full for n, pull in zip(names, rec_pulls(zeros), strict=True)},
        )


def block_alphas(net: MetamorphicNetwork) -> dict[str, float]:
    """The residual scale α of every active metamorphic block, keyed by its name (``stage3.block1``)."""
    return {block_name(s, b): float(net.alphas.detach()[i]) for i, (s, b) in enumerate(net.active())}


def worst_by_block(errors: dict[str, float], *, lowest: bool = False) -> dict[str, float]:
    """The largest of :func:`reconstruction_errors` over each block's tensors (``lowest``: the smallest, as of a
    :class:`LossBalance` ratio), keyed by block name, in the order the tensors come. NaN (a diverged INR) wins
    over any number, so that it is never hidden."""
    sign = -1.0 if lowest else 1.0
    worst: dict[str, float] = {}
    for path, error in errors.items():
        name = block_name(*block_of_path(path))  # stages.{s}.{b}.conv1.weight, layer{s+1}.{b}.conv1.weight
        previous = worst.get(name, -sign * math.inf)
        worst[name] = error if math.isnan(error) or sign * error > sign * previous else previous
    return worst
