"""CIFAR-style ResNets of depth 6n+2, BatchNorm folding, and the one definition of γ ↔ hidden width.

Module names are stable and used everywhere (smoothing groups, INR targets, checkpoints):
``stem.conv``, ``stages.{s}.{b}.conv1`` / ``conv2`` / ``shortcut``, ``fc`` (s and b count from 0).
A block is named in configs and reports as ``stage{s+1}.block{b}`` (stages from 1 as in the papers).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raymeta.errors import ConfigError

GAMMA_MIN = -1.0
"""Most negative compression ratio accepted: γ = -1 doubles the hidden width of a block."""


def hidden_width(channels: int, gamma: float) -> int:
    """Hidden width h of a block of width C at compression ratio γ: ``h = round((1 − γ) · C)``.

    This is the single definition of γ used by training, baselines, evaluation, reports and export.
    γ = 0 is the full block, γ = 0.5 halves the hidden width, γ < 0 is wider than the prior.
    """
    if channels < 1:
        raise ConfigError(f"block width must be a positive integer, got {channels}")
    if not isinstance(gamma, (int, float)) or not math.isfinite(gamma):
        raise ConfigError(f"compression ratio γ must be a finite number, got {gamma!r}")
    if not GAMMA_MIN <= gamma < 1.0:
        raise ConfigError(f"compression ratio γ={gamma} is out of range: allowed is {GAMMA_MIN} ≤ γ < 1")
    width = round((1.0 - gamma) * channels)
    if width < 1:
        largest = 1.0 - 0.5 / channels
        raise ConfigError(
            f"compression ratio γ={gamma} leaves no hidden channel in a block of width {channels} "
            f"(round((1-γ)·{channels}) = 0); allowed is γ < {largest:.4f} for this width"
        )
    return width


def compression_ratio(hidden: int, channels: int) -> float:
    """Inverse of :func:`hidden_width`: ``γ = 1 − h / C``."""
    if channels < 1 or hidden < 1:
        raise ConfigError(f"widths must be positive integers, got hidden={hidden}, channels={channels}")
    return 1.0 - hidden / channels


@dataclass(frozen=True)
class Architecture:
    """Shape of a CIFAR-style ResNet: depth 6n+2, three stage widths, input and output sizes."""

    depth: int
    widths: tuple[int, int, int]
    in_channels: int
    num_classes: int

    def __post_init__(self) -> None:
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ConfigError(f"ResNet depth must be 6n+2 with n ≥ 1 (8, 14, 20, …, 56), got {self.depth}")
        if len(self.widths) != 3 or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"ResNet widths must be three positive integers, got {self.widths}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ConfigError(
                f"need in_channels ≥ 1 and num_classes ≥ 2, got {self.in_channels} and {self.num_classes}"
            )

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    def block_positions(self) -> list[tuple[int, int]]:
        """All (stage, block) positions in forward order."""
        return [(s, b) for s in range(3) for b in range(self.blocks_per_stage)]

    def has_projection(self, stage: int, block: int) -> bool:
        """The first block of stages 2 and 3 downsamples with a 1×1 projection shortcut."""
        return stage > 0 and block == 0

    def last_position(self) -> tuple[int, int]:
        return (2, self.blocks_per_stage - 1)


def block_name(stage: int, block: int) -> str:
    """The user-facing name of a block: ``stage{1..3}.block{0..n-1}``."""
    return f"stage{stage + 1}.block{block}"


def module_prefix(stage: int, block: int) -> str:
    """The module path of a block inside :class:`ResNet`."""
    return f"stages.{stage}.{block}"


class BasicBlock(nn.Module):
    """``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``; without BatchNorm the convs carry biases."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, stride: int, batchnorm: bool):
        super().__init__()
        bias = not batchnorm
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(hidden) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias))
            if batchnorm:
                self.shortcut.append(nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.shortcut(x) + branch)


class ResNet(nn.Module):
    """CIFAR-style ResNet; ``hidden_widths`` sets each block's inner width (default: the block width)."""

    def __init__(
        self, arch: Architecture, *, batchnorm: bool = True, hidden_widths: dict[tuple[int, int], int] | None = None
    ):
        super().__init__()
        self.arch = arch
        self.batchnorm = batchnorm
        hidden_widths = hidden_widths or {}
        w1 = arch.widths[0]
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(arch.in_channels, w1, 3, 1, 1, bias=not batchnorm))
        if batchnorm:
            self.stem.add_module("bn", nn.BatchNorm2d(w1))
        self.stages = nn.ModuleList()
        in_channels = w1
        for s, width in enumerate(arch.widths):
            blocks = nn.ModuleList()
            for b in range(arch.blocks_per_stage):
                stride = 2 if arch.has_projection(s, b) else 1
                hidden = hidden_widths.get((s, b), width)
                blocks.append(BasicBlock(in_channels, width, hidden, stride, batchnorm))
                in_channels = width
            self.stages.append(blocks)
        self.fc = nn.Linear(arch.widths[2], arch.num_classes)

    def block(self, stage: int, block: int) -> BasicBlock:
        return self.stages[stage][block]

    # The seams (timm's): features are everything up to the global pool's input, the head is pool → flatten → fc;
    # a caller that shares or caches part of the network (an evaluation of many γ, the deploy search) runs the
    # parts it needs instead of writing them again.
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: conv (→ BN) → ReLU, the input of the first block."""
        return F.relu(self.stem(x))

    def forward_blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """The blocks ``start`` to ``stop`` (exclusive; None: the last), counted in forward order
        (:meth:`Architecture.block_positions`), applied to ``x``."""
        for s, b in self.arch.block_positions()[start:stop]:
            x = self.block(s, b)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output, [N, C, H, W]: everything before the global pool."""
        return self.forward_blocks(self.forward_stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`forward_features`' output: global average pool, flatten, ``fc``."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``W·g/√(v+ε)`` and ``(b−m)·g/√(v+ε)+β``: the conv that computes conv→BN in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    return weight, (bias - bn.running_mean) * scale + bn.bias


@torch.no_grad()
def fold_batchnorm(model: ResNet) -> ResNet:
    """A BatchNorm-free copy of a trained ResNet that computes the same function in eval mode.

    The statistics are read from ``model`` as it is now: fold only after its weights are loaded
    (folding first and loading later silently drops the statistics).
    """
    if not model.batchnorm:
        return copy.deepcopy(model)
    hidden = {(s, b): model.block(s, b).conv1.out_channels for s, b in model.arch.block_positions()}
    folded = ResNet(model.arch, batchnorm=False, hidden_widths=hidden)
    pairs = [(model.stem.conv, model.stem.bn, folded.stem.conv)]
    for s, b in model.arch.block_positions():
        src, dst = model.block(s, b), folded.block(s, b)
        pairs += [(src.conv1, src.bn1, dst.conv1), (src.conv2, src.bn2, dst.conv2)]
        if isinstance(src.shortcut, nn.Sequential):
            pairs.append((src.shortcut[0], src.shortcut[1], dst.shortcut[0]))
    for conv, bn, target in pairs:
        weight, bias = _fold_conv_bn(conv, bn)
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    folded.fc.load_state_dict(model.fc.state_dict())
    return folded.eval()


def count_params_macs(
    arch: Architecture, hidden_widths: dict[tuple[int, int], int] | None, image_size: int, *, batchnorm: bool = False
) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one forward pass of a ResNet on one image, by formula.

    ``hidden_widths`` maps (stage, block) to the block's inner width (missing: the block width).
    Counts convolutions (with bias when ``batchnorm`` is False, else BatchNorm's affine parameters)
    and the classifier; MACs count convolution and linear multiply-adds only.
    """
    hidden_widths = hidden_widths or {}
    params = macs = 0
    size = image_size

    def conv(cin: int, cout: int, k: int, stride: int) -> None:
        nonlocal params, macs, size
        size = (size + 2 * (k // 2) - k) // stride + 1
        params += cout * cin * k * k + (2 * cout if batchnorm else cout)
        macs += cout * cin * k * k * size * size

    conv(arch.in_channels, arch.widths[0], 3, 1)
    in_channels = arch.widths[0]
    for s, b in arch.block_positions():
        width = arch.widths[s]
        hidden = hidden_widths.get((s, b), width)
        stride = 2 if arch.has_projection(s, b) else 1
        start = size
        conv(in_channels, hidden, 3, stride)
        conv(hidden, width, 3, 1)
        if stride != 1 or in_channels != width:
            after = size
            size = start
            conv(in_channels, width, 1, stride)
            assert size == after
        in_channels = width
    params += arch.widths[2] * arch.num_classes + arch.num_classes
    macs += arch.widths[2] * arch.num_classes
    return params, macs


def metamorphic_candidates(arch: Architecture) -> list[tuple[int, int]]:
    """Blocks that can be metamorphic: every block without a projection shortcut."""
    return [(s, b) for s, b in arch.block_positions() if not arch.has_projection(s, b)]


def resolve_blocks(spec: list[str], arch: Architecture) -> list[tuple[int, int]]:
    """Turn block names (``stage3.block1``, ``stage3.block1-7``, ``stage3``, ``full``, ``last``) into positions.

    ``full`` is the paper's full-network setting (HTTY Fig. 2): every block "excluding the first block of
    each layer", and without the network's last block, which the recipe fine-tunes instead (§3.1). ``stageK``
    is the same restricted to one stage. The first block of stage 1 has no projection shortcut, so it can be
    metamorphic when named (``stage1.block0``); the last block likewise (or ``last``), as NeuMeta does.
    """
    allowed = ", ".join(block_name(s, b) for s, b in metamorphic_candidates(arch))
    last = arch.last_position()
    positions: list[tuple[int, int]] = []
    for token in spec:
        token = str(token).strip()
        if token == "full":
            found = [p for s in range(3) for p in _parse_block_token(f"stage{s + 1}", arch, allowed)]
        elif token == "last":
            found = [last]
        else:
            found = _parse_block_token(token, arch, allowed)
        for position in found:
            if arch.has_projection(*position):
                raise ConfigError(
                    f"block {block_name(*position)} has a projection shortcut and cannot be metamorphic; "
                    f"allowed blocks: {allowed}"
                )
            if position in positions:
                raise ConfigError(f"block {block_name(*position)} is listed twice in train.blocks={spec}")
            positions.append(position)
    if not positions:
        raise ConfigError(f"train.blocks={spec} names no block; allowed blocks: {allowed}")
    return positions


def _parse_block_token(token: str, arch: Architecture, allowed: str) -> list[tuple[int, int]]:
    import re

    match = re.fullmatch(r"stage([1-3])(?:\.block(\d+)(?:-(\d+))?)?", token)
    if not match:
        raise ConfigError(
            f"block name {token!r} is not understood: use stageK, stageK.blockB, stageK.blockA-B, full or last "
            f"(allowed blocks: {allowed})"
        )
    stage = int(match.group(1)) - 1
    n = arch.blocks_per_stage
    if match.group(2) is None:  # a whole stage: without its first block (HTTY Fig. 2) and the network's last
        return [(stage, b) for b in range(1, n) if (stage, b) != arch.last_position()]
    first = int(match.group(2))
    final = int(match.group(3)) if match.group(3) is not None else first
    if not 0 <= first <= final < n:
        raise ConfigError(f"block range {token!r} is outside stage {stage + 1}, which has blocks 0..{n - 1}")
    return [(stage, b) for b in range(first, final + 1)]
