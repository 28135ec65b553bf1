"""Intra-network smoothing (NeuMeta): permute channels so that neighbouring channels have similar weights.

Channels coupled by residual additions form one group that must share one permutation: the residual
stream of each stage (stem or projection output, every block's last conv's output, the inputs of the convs and
of the classifier that read the stream) and, on their own, each block's hidden channels (a Bottleneck has two
such sets: conv1's outputs with conv2's inputs, conv2's outputs with conv3's inputs). A permutation applied
to a group's producers and inverted on its consumers leaves the network's function unchanged. Each
group is ordered by the shortest Hamiltonian path between its channels under L1 distance; the input
image channels and the class outputs are never permuted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from raymeta.method.models import Architecture, ResNet, block_hidden_widths
from raymeta.method.tsp import l1_distance_matrix, shortest_hamiltonian_path

Member = tuple[str, int]  # (state-dict name, axis holding the group's channels)


@dataclass
class SmoothingReport:
    total_variation_before: float
    total_variation_after: float
    groups: int


PERMUTATION_EXAMPLE_SIZE = 32
"""Side of the example image the dependency graph traces: every family's feature maps stay at least 1×1."""


def permutation_groups(arch: Architecture) -> list[list[Member]]:
    """Every channel group of a BN-folded ResNet, as (tensor name, channel axis) members, in state-dict order.

    Torch-Pruning's DependencyGraph finds them: it traces the network and couples every axis that must move with a
    conv's output channels (the next convs' inputs, and across residual additions the whole stream), so any family
    of blocks gets its groups without a hand-written graph. The classifier's outputs (the classes) are left out,
    and the image's channels are never a group's root."""
    import torch_pruning as tp

    model = ResNet(arch, batchnorm=False).eval()
    names = {module: name for name, module in model.named_modules()}
    order = {key: index for index, key in enumerate(model.state_dict())}
    example = torch.zeros(1, arch.in_channels, PERMUTATION_EXAMPLE_SIZE, PERMUTATION_EXAMPLE_SIZE)
    with torch.enable_grad():  # the graph is traced through autograd (smoothing itself runs without gradients)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    outputs = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)
    inputs = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
    groups = []
    for group in graph.get_all_groups(ignored_layers=[model.fc], root_module_types=[nn.Conv2d, nn.Linear]):
        members: set[Member] = set()
        for dependency, _ in group:
            module, handler = dependency.target.module, dependency.handler
            if handler in outputs:
                members |= {(f"{names[module]}.weight", 0), (f"{names[module]}.bias", 0)}
            elif handler in inputs:
                members.add((f"{names[module]}.weight", 1))
        groups.append(sorted(members, key=lambda member: (order[member[0]], member[1])))
    return sorted(groups, key=lambda group: (order[group[0][0]], group[0][1]))


def _channel_features(state: dict[str, torch.Tensor], group: list[Member]) -> np.ndarray:
    """One row per channel: the channel's slices of every member tensor, concatenated."""
    parts = [
        state[name].detach().double().movedim(axis, 0).reshape(state[name].shape[axis], -1) for name, axis in group
    ]
    return torch.cat(parts, dim=1).cpu().numpy()


def total_variation(model: ResNet) -> float:
    """Sum of |differences| between adjacent entries along both channel axes of every weight tensor."""
    total = 0.0
    for name, tensor in model.state_dict().items():
        if name.endswith("weight") and tensor.dim() >= 2:
            t = tensor.detach().double()
            total += (t[1:] - t[:-1]).abs().sum().item() + (t[:, 1:] - t[:, :-1]).abs().sum().item()
    return total


@torch.no_grad()
def smooth_network(model: ResNet, *, restarts: int = 4, seed: int = 0) -> tuple[ResNet, SmoothingReport]:
    """A permuted copy of a BN-folded ResNet that computes the same function with lower total variation."""
    if model.batchnorm:
        raise ValueError("fold BatchNorm before smoothing: permutation groups are defined on the folded network")
    before = total_variation(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    groups = permutation_groups(model.arch)
    for group in groups:
        features = _channel_features(state, group)
        order = shortest_hamiltonian_path(l1_distance_matrix(features), restarts=restarts, seed=seed)
        index = torch.as_tensor(order, dtype=torch.long)
        for name, axis in group:
            state[name] = state[name].index_select(axis, index)
    smoothed = ResNet(model.arch, batchnorm=False, hidden_widths=block_hidden_widths(model))
    smoothed.load_state_dict(state)
    smoothed.eval()
    return smoothed, SmoothingReport(before, total_variation(smoothed), len(groups))
