"""Statistics calibration of a generated network (REPAIR, Jordan et al. 2023, "REPAIR: REnormalizing Permuted
Activations for Interpolation Repair"): what makes narrow widths, unseen ones included, hold.

A generated block at hidden width h < C merges the prior's hidden channels: channel o of conv1 averages the
filters of the channels in its cell (``MetamorphicNetwork.prior_base``), and an average of filters that are
similar but not equal has a smaller response than its members, so the merged channel's pre-activation has a
smaller spread than the channels it stands for ("variance collapse"). Measured on the full-network Fashion-MNIST
protocol, this, not the INR's correction, is what breaks γ = 0.75: the trained network reads 69 % there
(validation), 83 % after calibration, with the seen widths unchanged (README, "Unseen widths").

:func:`calibrate` corrects it from a few unlabelled images: for each block in order, every conv with a hidden
output gets a per-channel affine map (its filters and bias scaled, its bias shifted) so that each channel's
pre-activation mean and standard deviation over the images equal the *target*: the full-width network's
statistics of the channels in its cell, merged by the same overlap weights as the base
(:func:`~raymeta.method.metamorphic.resample_matrix`). At γ = 0 the target is the network's own statistics, so
calibration changes nothing there (up to rounding). Blocks are calibrated in order, each on the outputs of the
blocks before it as already calibrated.
"""

from __future__ import annotations

import torch

from raymeta.method.metamorphic import MetamorphicNetwork, resample_matrix
from raymeta.method.widths import Gamma

STD_FLOOR = 1e-6
"""A channel's spread below this (a dead channel) is left as it is rather than blown up."""


def _moments(values: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of pre-activations [N, C, H, W] over N, H and W."""
    flat = torch.cat([v.transpose(0, 1).flatten(1) for v in values], dim=1)
    return flat.mean(1), flat.std(1)


@torch.no_grad()
def _preactivations(
    net: MetamorphicNetwork, prefixes: list[torch.Tensor], weights: dict[str, torch.Tensor]
) -> dict[str, list[torch.Tensor]]:
    """Every generated hidden-output conv's pre-activations on each batch of frozen-prefix outputs."""
    recorded: dict[str, list[torch.Tensor]] = {}
    for prefix in prefixes:
        record: dict[str, torch.Tensor] = {}
        net.forward_after_prefix(prefix, weights, preactivations=record)
        for name, value in record.items():
            recorded.setdefault(name, []).append(value)
    return recorded


@torch.no_grad()
def calibrate(
    net: MetamorphicNetwork,
    weights: dict[str, torch.Tensor],
    gamma: Gamma,
    prefixes: list[torch.Tensor],
    reference: dict[str, list[torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """``weights`` (generated at γ) with every hidden-output conv's channels affinely matched to the full-width
    network's merged statistics on ``prefixes`` (the frozen prefix's outputs of the calibration images: see
    :func:`calibration_prefixes`); a new dict, ``weights`` is left as it is. ``reference``: the full-width
    network's pre-activations (:func:`reference_preactivations`), computed here when not given."""
    if reference is None:
        reference = reference_preactivations(net, prefixes)
    hidden = net.hidden_widths(gamma)
    calibrated = dict(weights)
    for s, b in net.active():
        module = net.arch.module_prefix(s, b)
        names = [f"{module}.{conv.name}" for conv in net.convs if conv.hidden_out]
        current = _preactivations(net, prefixes, calibrated)  # with the blocks before this one calibrated
        matrix = resample_matrix(net.arch.widths[s], hidden[(s, b)]).to(prefixes[0].dtype)
        for name in names:
            mean, std = _moments(current[name])
            target_mean, target_std = (matrix.to(mean.device) @ m for m in _moments(reference[name]))
            scale = torch.where(std > STD_FLOOR, target_std / std.clamp_min(STD_FLOOR), torch.ones_like(std))
            calibrated[f"{name}.weight"] = weights[f"{name}.weight"] * scale[:, None, None, None]
            calibrated[f"{name}.bias"] = (weights[f"{name}.bias"] - mean) * scale + target_mean
            if len(names) > 1:  # a Bottleneck: conv2's statistics depend on conv1's calibration
                current = _preactivations(net, prefixes, calibrated)
    return calibrated


@torch.no_grad()
def reference_preactivations(net: MetamorphicNetwork, prefixes: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """The full-width (γ = 0, noise-free) network's hidden pre-activations on ``prefixes``: every γ's target."""
    return _preactivations(net, prefixes, net.generate(0.0))


@torch.no_grad()
def calibration_prefixes(net: MetamorphicNetwork, images: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """The frozen prefix's outputs of the calibration ``images`` [N, C, H, W], in batches."""
    device = net.alphas.device
    return [net.frozen_prefix(chunk.to(device)) for chunk in images.split(batch_size)]


def calibrate_many(
    net: MetamorphicNetwork, weight_sets: list[dict[str, torch.Tensor]], gammas: list[Gamma], images: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """:func:`calibrate` for several γ, sharing the prefix and the reference statistics."""
    prefixes = calibration_prefixes(net, images)
    reference = reference_preactivations(net, prefixes)
    return [
        calibrate(net, weights, gamma, prefixes, reference) for weights, gamma in zip(weight_sets, gammas, strict=True)
    ]
