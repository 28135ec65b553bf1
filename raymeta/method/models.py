"""ResNets — CIFAR-style of depth 6n+2 and torchvision's ImageNet family — BatchNorm folding, and the one
definition of γ ↔ hidden width and of a block's convolutions.

Two families of module names, each stable and used everywhere (smoothing groups, INR targets, checkpoints):

- ``cifar`` (raymeta's own): ``stem.conv``, ``stages.{s}.{b}.conv1`` / ``conv2`` / ``shortcut``, ``fc``;
- ``basic`` and ``bottleneck`` (torchvision's ResNet-18/34 and ResNet-50/101): ``conv1``, ``bn1``,
  ``layer{s+1}.{b}.conv1`` / ``conv2`` (/ ``conv3``) / ``downsample``, ``fc`` — torchvision's own names, so its
  state dicts load as they are. Their stem is ImageNet's: a 7×7 stride-2 conv, BatchNorm, ReLU, a 3×3 stride-2
  max pool.

s and b count from 0. A block is named in configs and reports as ``stage{s+1}.block{b}`` (stages from 1 as in
the papers). A block's *hidden width* is what γ scales (:func:`hidden_width`): the inner width of a BasicBlock
(conv1's output, conv2's input) and the bottleneck width of a Bottleneck (conv1's output, conv2's input and
output, conv3's input); :func:`block_convs` says which axes of which conv it is.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raymeta.errors import ConfigError

GAMMA_MIN = -1.0
"""Most negative compression ratio accepted: γ = -1 doubles the hidden width of a block."""

FAMILIES = ("cifar", "basic", "bottleneck")
"""Block families: CIFAR ResNets 6n+2, torchvision's BasicBlock ResNets (18/34), its Bottleneck ResNets (50/101)."""


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
    """Shape of a ResNet: its family, depth, stage widths, blocks per stage, input and output sizes.

    ``widths`` are the hidden widths of each stage's blocks at γ = 0 (for a Bottleneck, the bottleneck width;
    its output is 4× that). ``stage_blocks`` is implied for ``cifar`` (three stages of (depth − 2) / 6) and
    given for the torchvision families (four stages, depth 2·Σ+2 for BasicBlocks, 3·Σ+2 for Bottlenecks).
    ``input_scale`` / ``input_shift`` (one number per input channel, or None) are an affine map applied to the
    input before the stem: the data's normalisation turned into the one an imported prior was trained with.
    """

    depth: int
    widths: tuple[int, ...]
    in_channels: int
    num_classes: int
    family: str = "cifar"
    stage_blocks: tuple[int, ...] | None = None
    input_scale: tuple[float, ...] | None = None
    input_shift: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"ResNet family {self.family!r} is not known; allowed: {', '.join(FAMILIES)}")
        stages = 3 if self.family == "cifar" else 4
        if len(self.widths) != stages or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"a {self.family} ResNet's widths must be {stages} positive integers, got {self.widths}")
        if self.family == "cifar":
            if self.depth < 8 or (self.depth - 2) % 6:
                raise ConfigError(f"ResNet depth must be 6n+2 with n ≥ 1 (8, 14, 20, …, 56), got {self.depth}")
            if self.stage_blocks is not None and tuple(self.stage_blocks) != (self.blocks_per_stage,) * 3:
                raise ConfigError(f"a cifar ResNet-{self.depth} has {self.blocks_per_stage} blocks per stage")
        else:
            blocks = tuple(self.stage_blocks or ())
            if len(blocks) != 4 or any(int(n) < 1 for n in blocks):
                raise ConfigError(f"a {self.family} ResNet needs four positive blocks per stage, got {blocks}")
            expected = (3 if self.family == "bottleneck" else 2) * sum(blocks) + 2
            if self.depth != expected:
                raise ConfigError(
                    f"a {self.family} ResNet with blocks {list(blocks)} has depth {expected}, not {self.depth}"
                )
        if self.in_channels < 1 or self.num_classes < 2:
            raise ConfigError(
                f"need in_channels ≥ 1 and num_classes ≥ 2, got {self.in_channels} and {self.num_classes}"
            )
        for name in ("input_scale", "input_shift"):
            value = getattr(self, name)
            if value is not None and len(value) != self.in_channels:
                raise ConfigError(f"{name} needs one number per input channel ({self.in_channels}), got {value}")

    @classmethod
    def from_record(cls, record: dict) -> Architecture:
        """An architecture from ``dataclasses.asdict`` of one, after a round trip through JSON or a checkpoint."""
        record = dict(record)
        for key in ("widths", "stage_blocks", "input_scale", "input_shift"):
            if record.get(key) is not None:
                record[key] = tuple(record[key])
        return cls(**record)

    @property
    def torchvision(self) -> bool:
        """True for torchvision's family: its module names and the ImageNet stem."""
        return self.family != "cifar"

    @property
    def expansion(self) -> int:
        """A block's output width over its hidden width: 4 for a Bottleneck, else 1."""
        return 4 if self.family == "bottleneck" else 1

    @property
    def blocks_per_stage(self) -> int:
        """Blocks in each stage of a cifar ResNet (every stage alike)."""
        return (self.depth - 2) // 6

    def blocks_in(self, stage: int) -> int:
        return self.blocks_per_stage if self.stage_blocks is None else int(self.stage_blocks[stage])

    @property
    def stages(self) -> int:
        return len(self.widths)

    def out_width(self, stage: int) -> int:
        """The residual stream's width in ``stage``: what its blocks read and write."""
        return self.widths[stage] * self.expansion

    @property
    def stem_width(self) -> int:
        """The stem's output width: the first stage's hidden width (64 in torchvision's ResNets)."""
        return self.widths[0]

    def block_positions(self) -> list[tuple[int, int]]:
        """All (stage, block) positions in forward order."""
        return [(s, b) for s in range(self.stages) for b in range(self.blocks_in(s))]

    def has_projection(self, stage: int, block: int) -> bool:
        """Blocks whose input width or resolution differs from their output's: the first of every stage after
        the first, and, in a Bottleneck network, the very first (stem width → 4× its hidden width)."""
        return block == 0 and (stage > 0 or self.stem_width != self.out_width(0))

    def last_position(self) -> tuple[int, int]:
        return (self.stages - 1, self.blocks_in(self.stages - 1) - 1)

    def module_prefix(self, stage: int, block: int) -> str:
        """The module path of a block inside :class:`ResNet`."""
        return f"layer{stage + 1}.{block}" if self.torchvision else f"stages.{stage}.{block}"

    def shortcut_name(self) -> str:
        """The projection shortcut's module name inside a block (its conv is ``.0``, its BatchNorm ``.1``)."""
        return "downsample" if self.torchvision else "shortcut"

    def stem_convs(self) -> tuple[str, str]:
        """(conv, BatchNorm) module paths of the stem."""
        return ("conv1", "bn1") if self.torchvision else ("stem.conv", "stem.bn")


TORCHVISION_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
"""torchvision's ResNets: block family and blocks per stage."""


def torchvision_architecture(
    name: str,
    in_channels: int,
    num_classes: int,
    *,
    stage_blocks: tuple[int, ...] | None = None,
    base_width: int | None = None,
    input_scale: tuple[float, ...] | None = None,
    input_shift: tuple[float, ...] | None = None,
) -> Architecture:
    """torchvision's ResNet ``name`` (resnet18 … resnet101), or a smaller one of its family (fewer blocks per
    stage, a narrower base width)."""
    if name not in TORCHVISION_RESNETS:
        raise ConfigError(f"torchvision ResNet {name!r} is not known; allowed: {', '.join(TORCHVISION_RESNETS)}")
    family, default_blocks = TORCHVISION_RESNETS[name]
    blocks = tuple(stage_blocks or default_blocks)
    base = base_width or 64
    depth = (3 if family == "bottleneck" else 2) * sum(blocks) + 2
    widths = (base, 2 * base, 4 * base, 8 * base)
    return Architecture(depth, widths, in_channels, num_classes, family, blocks, input_scale, input_shift)


@dataclass(frozen=True)
class BlockConv:
    """One conv of a block's residual branch, in forward order."""

    name: str
    """Module name inside the block: ``conv1``, ``conv2``, ``conv3``."""
    kernel: int
    hidden_out: bool
    """Its output channels are the block's hidden channels (their count is what γ scales)."""
    hidden_in: bool
    """Its input channels are hidden channels."""


def block_convs(arch: Architecture) -> tuple[BlockConv, ...]:
    """The residual branch's convs of every block of ``arch``: the one definition of what a block generates."""
    if arch.family == "bottleneck":
        return (
            BlockConv("conv1", 1, True, False),
            BlockConv("conv2", 3, True, True),
            BlockConv("conv3", 1, False, True),
        )
    return (BlockConv("conv1", 3, True, False), BlockConv("conv2", 3, False, True))


def module_prefix(stage: int, block: int, arch: Architecture | None = None) -> str:
    """The module path of a block inside :class:`ResNet` (a cifar ResNet's when ``arch`` is not given)."""
    return arch.module_prefix(stage, block) if arch is not None else f"stages.{stage}.{block}"


def block_of_path(path: str) -> tuple[int, int] | None:
    """(stage, block) of a tensor path of either family (``stages.2.1.conv1.weight``, ``layer4.1.conv2.weight``);
    None for a path outside the blocks."""
    match = re.match(r"(?:stages\.(\d+)|layer(\d+))\.(\d+)\.", path)
    if not match:
        return None
    stage = int(match.group(1)) if match.group(1) is not None else int(match.group(2)) - 1
    return stage, int(match.group(3))


def block_name(stage: int, block: int) -> str:
    """The user-facing name of a block: ``stage{1..}.block{0..n-1}``."""
    return f"stage{stage + 1}.block{block}"


class BasicBlock(nn.Module):
    """``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``; without BatchNorm the convs carry biases.

    ``shortcut_name`` is the projection's module name: ``shortcut`` (cifar) or ``downsample`` (torchvision)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int,
        stride: int,
        batchnorm: bool,
        shortcut_name: str = "shortcut",
    ):
        super().__init__()
        bias = not batchnorm
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(hidden) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.shortcut_name = shortcut_name
        setattr(self, shortcut_name, _projection(in_channels, out_channels, stride, batchnorm))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the addition."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, self.shortcut_name)(x) + self.branch(x))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3×3 conv): ``relu(downsample(x) + bn3(conv3(relu(bn2(
    conv2(relu(bn1(conv1(x)))))))))``, conv1 1×1 in → h, conv2 3×3 h → h, conv3 1×1 h → out."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, stride: int, batchnorm: bool):
        super().__init__()
        bias = not batchnorm
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, 1, 0, bias=bias)
        self.bn1 = nn.BatchNorm2d(hidden) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(hidden) if batchnorm else nn.Identity()
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=bias)
        self.bn3 = nn.BatchNorm2d(out_channels) if batchnorm else nn.Identity()
        self.shortcut_name = "downsample"
        self.downsample = _projection(in_channels, out_channels, stride, batchnorm)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the addition."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.bn3(self.conv3(F.relu(self.bn2(self.conv2(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.downsample(x) + self.branch(x))


def _projection(in_channels: int, out_channels: int, stride: int, batchnorm: bool) -> nn.Module:
    """A 1×1 projection (→ BN) where the shape changes, else the identity."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    projection = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=not batchnorm))
    if batchnorm:
        projection.append(nn.BatchNorm2d(out_channels))
    return projection


def block_input_width(arch: Architecture, stage: int, block: int) -> int:
    """The width of the stream a block reads: the stem's, or the previous block's output."""
    if block > 0:
        return arch.out_width(stage)
    return arch.stem_width if stage == 0 else arch.out_width(stage - 1)


def make_block(arch: Architecture, stage: int, block: int, hidden: int, batchnorm: bool) -> nn.Module:
    """The block at (stage, block) of ``arch`` with hidden width ``hidden``."""
    stride = 2 if stage > 0 and block == 0 else 1
    in_channels, out_channels = block_input_width(arch, stage, block), arch.out_width(stage)
    if arch.family == "bottleneck":
        return Bottleneck(in_channels, out_channels, hidden, stride, batchnorm)
    return BasicBlock(in_channels, out_channels, hidden, stride, batchnorm, arch.shortcut_name())


class ResNet(nn.Module):
    """A ResNet of any family; ``hidden_widths`` sets each block's hidden width (default: the stage width)."""

    def __init__(
        self, arch: Architecture, *, batchnorm: bool = True, hidden_widths: dict[tuple[int, int], int] | None = None
    ):
        super().__init__()
        self.arch = arch
        self.batchnorm = batchnorm
        hidden_widths = hidden_widths or {}
        stem = arch.stem_width
        if arch.torchvision:  # torchvision's names: conv1, bn1, maxpool, layer1..4, fc
            self.conv1 = nn.Conv2d(arch.in_channels, stem, 7, 2, 3, bias=not batchnorm)
            self.bn1 = nn.BatchNorm2d(stem) if batchnorm else nn.Identity()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.stem = nn.Sequential()
            self.stem.add_module("conv", nn.Conv2d(arch.in_channels, stem, 3, 1, 1, bias=not batchnorm))
            if batchnorm:
                self.stem.add_module("bn", nn.BatchNorm2d(stem))
            self.stages = nn.ModuleList()
        for s in range(arch.stages):
            blocks = [
                make_block(arch, s, b, hidden_widths.get((s, b), arch.widths[s]), batchnorm)
                for b in range(arch.blocks_in(s))
            ]
            if arch.torchvision:
                self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
            else:
                self.stages.append(nn.ModuleList(blocks))
        self.fc = nn.Linear(arch.out_width(arch.stages - 1), arch.num_classes)
        if arch.input_scale is not None or arch.input_shift is not None:
            # Not in the state dict: the architecture holds them, so a checkpoint's keys are the zoo's.
            shape = (1, arch.in_channels, 1, 1)
            scale = torch.tensor(arch.input_scale or (1.0,) * arch.in_channels).reshape(shape)
            shift = torch.tensor(arch.input_shift or (0.0,) * arch.in_channels).reshape(shape)
            self.register_buffer("input_scale", scale, persistent=False)
            self.register_buffer("input_shift", shift, persistent=False)
        else:
            self.input_scale = self.input_shift = None

    def block(self, stage: int, block: int) -> nn.Module:
        if self.arch.torchvision:
            return getattr(self, f"layer{stage + 1}")[block]
        return self.stages[stage][block]

    # The seams (timm's): features are everything up to the global pool's input, the head is pool → flatten → fc;
    # a caller that shares or caches part of the network (an evaluation of many γ, the deploy search) runs the
    # parts it needs instead of writing them again.
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The input map (an imported prior's normalisation), then the stem: conv (→ BN) → ReLU (→ max pool in
        torchvision's family), the input of the first block."""
        if self.input_scale is not None:
            x = x * self.input_scale + self.input_shift
        if self.arch.torchvision:
            return self.maxpool(F.relu(self.bn1(self.conv1(x))))
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


def conv_batchnorm_pairs(arch: Architecture) -> list[tuple[str, str]]:
    """(conv, BatchNorm) module paths of every conv of ``arch``: what folding merges."""
    pairs = [arch.stem_convs()]
    for s, b in arch.block_positions():
        prefix = arch.module_prefix(s, b)
        pairs += [(f"{prefix}.{conv.name}", f"{prefix}.bn{conv.name[-1]}") for conv in block_convs(arch)]
        if arch.has_projection(s, b):
            pairs.append((f"{prefix}.{arch.shortcut_name()}.0", f"{prefix}.{arch.shortcut_name()}.1"))
    return pairs


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``W·g/√(v+ε)`` and ``(b−m)·g/√(v+ε)+β``: the conv that computes conv→BN in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = conv.weight * scale.reshape(-1, 1, 1, 1)
    return weight, (bias - bn.running_mean) * scale + bn.bias


def block_hidden_widths(model: ResNet) -> dict[tuple[int, int], int]:
    """Every block's hidden width as the model holds it."""
    return {(s, b): model.block(s, b).conv1.out_channels for s, b in model.arch.block_positions()}


@torch.no_grad()
def fold_batchnorm(model: ResNet) -> ResNet:
    """A BatchNorm-free copy of a trained ResNet that computes the same function in eval mode.

    The statistics are read from ``model`` as it is now: fold only after its weights are loaded
    (folding first and loading later silently drops the statistics).
    """
    if not model.batchnorm:
        return copy.deepcopy(model)
    folded = ResNet(model.arch, batchnorm=False, hidden_widths=block_hidden_widths(model))
    for conv_path, bn_path in conv_batchnorm_pairs(model.arch):
        weight, bias = _fold_conv_bn(model.get_submodule(conv_path), model.get_submodule(bn_path))
        target = folded.get_submodule(conv_path)
        target.weight.copy_(weight)
        target.bias.copy_(bias)
    folded.fc.load_state_dict(model.fc.state_dict())
    return folded.eval()


def count_params_macs(
    arch: Architecture, hidden_widths: dict[tuple[int, int], int] | None, image_size: int, *, batchnorm: bool = False
) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one forward pass of a ResNet on one image, by formula.

    ``hidden_widths`` maps (stage, block) to the block's hidden width (missing: the stage width).
    Counts convolutions (with bias when ``batchnorm`` is False, else BatchNorm's affine parameters)
    and the classifier; MACs count convolution and linear multiply-adds only (not the max pool).
    """
    hidden_widths = hidden_widths or {}
    params = macs = 0
    size = image_size

    def conv(cin: int, cout: int, k: int, stride: int, at: int) -> int:
        """One conv on a map of size ``at``; returns its output size."""
        nonlocal params, macs
        out = (at + 2 * (k // 2) - k) // stride + 1
        params += cout * cin * k * k + (2 * cout if batchnorm else cout)
        macs += cout * cin * k * k * out * out
        return out

    if arch.torchvision:
        size = conv(arch.in_channels, arch.stem_width, 7, 2, size)
        size = (size + 2 - 3) // 2 + 1  # the 3×3 stride-2 max pool
    else:
        size = conv(arch.in_channels, arch.stem_width, 3, 1, size)
    for s, b in arch.block_positions():
        hidden = hidden_widths.get((s, b), arch.widths[s])
        stride = 2 if s > 0 and b == 0 else 1
        cin, cout = block_input_width(arch, s, b), arch.out_width(s)
        start = size
        if arch.family == "bottleneck":
            size = conv(cin, hidden, 1, 1, size)
            size = conv(hidden, hidden, 3, stride, size)
            size = conv(hidden, cout, 1, 1, size)
        else:
            size = conv(cin, hidden, 3, stride, size)
            size = conv(hidden, cout, 3, 1, size)
        if arch.has_projection(s, b):
            assert conv(cin, cout, 1, stride, start) == size
    width = arch.out_width(arch.stages - 1)
    params += width * arch.num_classes + arch.num_classes
    macs += width * arch.num_classes
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
            found = [p for s in range(arch.stages) for p in _parse_block_token(f"stage{s + 1}", arch, allowed)]
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
    match = re.fullmatch(r"stage([1-9])(?:\.block(\d+)(?:-(\d+))?)?", token)
    if not match:
        raise ConfigError(
            f"block name {token!r} is not understood: use stageK, stageK.blockB, stageK.blockA-B, full or last "
            f"(allowed blocks: {allowed})"
        )
    stage = int(match.group(1)) - 1
    if stage >= arch.stages:
        raise ConfigError(f"block name {token!r}: the network has stages 1..{arch.stages} (allowed blocks: {allowed})")
    n = arch.blocks_in(stage)
    if match.group(2) is None:  # a whole stage: without its first block (HTTY Fig. 2) and the network's last
        return [(stage, b) for b in range(1, n) if (stage, b) != arch.last_position()]
    first = int(match.group(2))
    final = int(match.group(3)) if match.group(3) is not None else first
    if not 0 <= first <= final < n:
        raise ConfigError(f"block range {token!r} is outside stage {stage + 1}, which has blocks 0..{n - 1}")
    return [(stage, b) for b in range(first, final + 1)]
