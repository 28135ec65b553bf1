"""A universally slimmable ResNet (US-Nets, Yu & Huang 2019): one network whose blocks run at any hidden width
by slicing, the baseline the NeuMeta paper compares against.

The network is an ordinary ResNet with BatchNorm. At hidden width h, a sliced block uses the first h channels
of its hidden axis (conv1's outputs and conv2's inputs; a Bottleneck's conv1 outputs, conv2 both axes and conv3
inputs) and the first h entries of the BatchNorm parameters on that axis; every other weight is shared by all
widths as it is. Training follows US-Nets: the *sandwich rule* (every step the widest and the narrowest width of
the training pool and a few random widths in between) and *in-place distillation* (the widest learns from the
labels, the others from the widest's detached soft output). BatchNorm statistics depend on the width, so after
training they are recomputed at each width that is evaluated (US-Nets' post-statistics,
:func:`recalibrate_batchnorm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raymeta.errors import ConfigError
from raymeta.method.models import ResNet, block_convs, block_name, hidden_width


class SlimmableResNet(nn.Module):
    """``model`` (a ResNet with BatchNorm) whose ``blocks`` run at any hidden width h ≤ C by slicing."""

    def __init__(self, model: ResNet, blocks: list[tuple[int, int]]):
        super().__init__()
        if not model.batchnorm:
            raise ValueError("a slimmable network keeps its BatchNorm: start it from the prior, not the folded one")
        self.model = model
        self.arch = model.arch
        self.blocks = list(blocks)
        self.convs = block_convs(model.arch)

    def hidden_widths(self, gamma: float) -> dict[tuple[int, int], int]:
        """Hidden width of every sliced block at γ; a ConfigError for γ < 0, which slicing cannot make."""
        widths = {(s, b): hidden_width(self.arch.widths[s], gamma) for s, b in self.blocks}
        for (s, b), width in widths.items():
            if width > self.arch.widths[s]:
                raise ConfigError(
                    f"slicing cannot widen a block: γ={gamma:g} asks for {width} hidden channels in "
                    f"{block_name(s, b)} of width {self.arch.widths[s]}; allowed is γ ≥ 0"
                )
        return widths

    def forward(self, x: torch.Tensor, hidden: dict[tuple[int, int], int]) -> torch.Tensor:
        """Logits of the network whose blocks ``hidden`` have those hidden widths (the others as they are)."""
        x = self.model.forward_stem(x)
        for s, b in self.arch.block_positions():
            block = self.model.block(s, b)
            x = self._sliced_block(block, x, hidden[(s, b)]) if (s, b) in hidden else block(x)
        return self.model.forward_head(x)

    def _sliced_block(self, block: nn.Module, x: torch.Tensor, width: int) -> torch.Tensor:
        branch = x
        for index, conv in enumerate(self.convs):
            module = getattr(block, conv.name)
            weight = module.weight
            if conv.hidden_out:
                weight = weight[:width]
            if conv.hidden_in:
                weight = weight[:, :width]
            if index:
                branch = F.relu(branch)
            branch = F.conv2d(branch, weight, None, module.stride, module.padding)
            norm = getattr(block, f"bn{conv.name[-1]}")
            branch = _sliced_batchnorm(norm, branch, width) if conv.hidden_out else norm(branch)
        return F.relu(getattr(block, block.shortcut_name)(x) + branch)

    def sliced(self, hidden: dict[tuple[int, int], int]) -> ResNet:
        """A freshly built ResNet of those hidden widths holding copies of the slices: the network
        :meth:`forward` runs at ``hidden``, standalone (to recalibrate, evaluate or export)."""
        net = ResNet(self.arch, batchnorm=True, hidden_widths=hidden)
        source = self.model.state_dict()
        state = {}
        for name, target in net.state_dict().items():
            value = source[name]
            state[name] = value[tuple(slice(0, n) for n in target.shape)].clone() if value.dim() else value.clone()
        net.load_state_dict(state)
        return net.to(next(self.model.parameters()).device).eval()


def _sliced_batchnorm(norm: nn.BatchNorm2d, x: torch.Tensor, width: int) -> torch.Tensor:
    """``norm`` on the first ``width`` channels: its parameters and running statistics sliced (views: a training
    step updates the statistics of those channels in place, as an unsliced BatchNorm would)."""
    return F.batch_norm(
        x,
        norm.running_mean[:width],
        norm.running_var[:width],
        norm.weight[:width],
        norm.bias[:width],
        training=norm.training,
        momentum=norm.momentum if norm.momentum is not None else 0.1,
        eps=norm.eps,
    )


def sandwich_gammas(pool: tuple[float, float], count: int, generator: torch.Generator) -> list[float]:
    """The γ of one step by the sandwich rule: the widest (``pool[0]``) first, then the narrowest (``pool[1]``),
    then ``count`` − 2 drawn uniformly in between."""
    low, high = float(pool[0]), float(pool[1])
    if count < 2:
        raise ConfigError(f"the sandwich rule needs at least 2 widths per step (the two ends), got {count}")
    between = torch.rand(count - 2, generator=generator, dtype=torch.float64)
    return [low, high, *(low + (high - low) * float(u) for u in between)]


def inplace_distillation(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` against the soft targets ``teacher`` (probabilities, no gradient): what each
    width but the widest learns from."""
    return -(teacher * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, device: torch.device) -> int:
    """Recompute every BatchNorm's running statistics of ``model`` as the plain average over ``batches`` (images,
    labels) in training mode, its weights untouched (US-Nets' post-statistics); returns the batches read. The
    model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: every batch counts alike
    model.train()
    count = 0
    try:
        for images, _ in batches:
            model(images.to(device))
            count += 1
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    if count == 0:
        raise ConfigError("BatchNorm recalibration needs at least one training batch")
    return count
