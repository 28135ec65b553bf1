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

from raymeta.method.models import Architecture, ResNet, block_convs, block_hidden_widths
from raymeta.method.tsp import l1_distance_matrix, shortest_hamiltonian_path

Member = tuple[str, int]  # (state-dict name, axis holding the group's channels)


@dataclass
class SmoothingReport:
    total_variation_before: float
    total_variation_after: float
    groups: int


def permutation_groups(arch: Architecture) -> list[list[Member]]:
    """Every channel group of a BN-folded ResNet, as (tensor name, channel axis) members."""
    groups: list[list[Member]] = []
    stem = arch.stem_convs()[0]
    stream: list[Member] = [(f"{stem}.weight", 0), (f"{stem}.bias", 0)]
    convs = block_convs(arch)
    for s, b in arch.block_positions():
        prefix = arch.module_prefix(s, b)
        for producer, consumer in zip(convs, convs[1:], strict=False):  # the hidden channels between two convs
            groups.append(
                [
                    (f"{prefix}.{producer.name}.weight", 0),
                    (f"{prefix}.{producer.name}.bias", 0),
                    (f"{prefix}.{consumer.name}.weight", 1),
                ]
            )
        stream.append((f"{prefix}.{convs[0].name}.weight", 1))
        if arch.has_projection(s, b):
            shortcut = f"{prefix}.{arch.shortcut_name()}.0"
            stream.append((f"{shortcut}.weight", 1))
            groups.append(stream)
            stream = [(f"{shortcut}.weight", 0), (f"{shortcut}.bias", 0)]
        stream += [(f"{prefix}.{convs[-1].name}.weight", 0), (f"{prefix}.{convs[-1].name}.bias", 0)]
    stream.append(("fc.weight", 1))
    groups.append(stream)
    return groups


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
