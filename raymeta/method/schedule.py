"""The stage schedule of training and what each stage starts with: which blocks are trained when, how the new
blocks' INRs are initialised (and optionally fitted to the prior first), the optimiser's parameter groups and
its warm-up, and one optimiser update.

Incremental training (HTTY §3.3) makes one more metamorphic block generated per stage, each new block starting
from its trained predecessor's INRs; NeuMeta trains every block from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raymeta.method.adamw import RowAdamW
from raymeta.method.health import reconstruction_errors
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.objective import reconstruction_error
from raymeta.seeds import derive_seed


@dataclass(frozen=True)
class Stage:
    """Stage ``index`` of a run trains the first ``active_blocks`` metamorphic blocks for ``epochs`` epochs."""

    index: int
    active_blocks: int
    epochs: int


def plan_stages(incremental: bool, epochs_per_stage: int, block_count: int) -> list[Stage]:
    """Incremental: one more block per stage. Otherwise one stage with as many epochs in total (paper §4.1)."""
    if incremental:
        return [Stage(i, i + 1, epochs_per_stage) for i in range(block_count)]
    return [Stage(0, block_count, epochs_per_stage * block_count)]


OPTIMISER_GROUPS = ("inr", "alpha", "head")
"""The parameter groups of the network's optimisers, in the order they are listed."""


def build_optimizer(
    net: MetamorphicNetwork,
    *,
    lr: float,
    weight_decay: float,
    alpha_lr: float,
    head_lr: float,
    head_weight_decay: float | None = None,
    groups: tuple[str, ...] = OPTIMISER_GROUPS,
) -> RowAdamW:
    """AdamW (:class:`~raymeta.method.adamw.RowAdamW`) over the network's parameter groups ``groups``: the INRs at
    ``lr``, the residual scales α at ``alpha_lr`` (weight decay ``head_weight_decay``, none when None), the
    fine-tuned head at ``head_lr`` (``head_weight_decay``, or ``weight_decay`` when None). Each group keeps its
    ``base_lr`` (what :func:`set_warmup` scales) and its ``name``; a group with no parameters is left out."""
    parameters = net.parameter_groups()
    alpha_decay = 0.0 if head_weight_decay is None else head_weight_decay
    head_decay = weight_decay if head_weight_decay is None else head_weight_decay
    settings = {"inr": (lr, weight_decay), "alpha": (alpha_lr, alpha_decay), "head": (head_lr, head_decay)}
    param_groups = [
        {"params": parameters[name], "lr": rate, "base_lr": rate, "weight_decay": decay, "name": name}
        for name, (rate, decay) in settings.items()
        if name in groups and parameters[name]
    ]
    return RowAdamW(param_groups)


def restart_new_blocks(net: MetamorphicNetwork, optimizer: torch.optim.Optimizer, first: int, last: int) -> None:
    """Blocks first..last-1 join a run whose optimiser goes on (``train.warmup: once``): their rows of the INR bank
    tensors and their entries of α start a fresh Adam state (zero moments, step count 0), so that their first
    updates have a fresh Adam's size, not the size the tensor's step count would give them (module
    :mod:`raymeta.method.adamw`)."""
    if not isinstance(optimizer, RowAdamW) or last <= first:
        return
    layers = [index for block in range(first, last) for index in net.block_layers(block)]
    for bank in net.hyper.banks():
        for parameter in bank.parameters():
            optimizer.restart_rows(parameter, layers)
    if net.alpha_scaling:
        optimizer.restart_rows(net.alphas, list(range(first, last)))


WARMUP_START = 1e-5
"""``train.warmup: first_stage`` starts at this fraction of every rate (HTTY's LinearLR start_factor)."""


def warmup_position(mode: str, global_step: int, epoch_in_stage: int, step_in_epoch: int, steps: int) -> int:
    """Steps into the warm-up: since the run began (``once``) or since the stage began (``per_stage``)."""
    if mode == "once":
        return global_step
    return epoch_in_stage * steps + step_in_epoch


def warmup_factor(
    mode: str,
    *,
    stage: int,
    global_step: int,
    epoch_in_stage: int,
    step_in_epoch: int,
    steps: int,
    warmup_epochs: float,
) -> float:
    """The fraction of the base rates at this step. once and per_stage: linear per step from ~0 over
    ``warmup_epochs`` × ``steps`` steps (from the run's or the stage's start). first_stage: linear per epoch from
    :data:`WARMUP_START` over ``warmup_epochs`` epochs of the first stage (HTTY's LinearLR, stepped per epoch),
    1 from then on and in every later stage."""
    if mode == "first_stage":
        if stage > 0 or warmup_epochs <= 0:
            return 1.0
        return WARMUP_START + (1 - WARMUP_START) * min(1.0, epoch_in_stage / warmup_epochs)
    position = warmup_position(mode, global_step, epoch_in_stage, step_in_epoch, steps)
    return 1.0 if warmup_epochs <= 0 else min(1.0, (position + 1) / (warmup_epochs * steps))


def set_rate(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Every group's rate at ``factor`` × its base rate; returns the factor."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor


def set_warmup(optimizer: torch.optim.Optimizer, position: int, warmup_steps: float) -> float:
    """Linear warm-up from ~0 to every group's base rate, then constant; returns the factor."""
    return set_rate(optimizer, 1.0 if warmup_steps <= 0 else min(1.0, (position + 1) / warmup_steps))


def trainable_parameters(net: MetamorphicNetwork) -> list[torch.nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def apply_update(
    net: MetamorphicNetwork,
    optimizer: torch.optim.Optimizer,
    clip_value: float,
    parameters: list[torch.nn.Parameter] | None = None,
) -> None:
    """One optimiser step on the accumulated gradients, each value of ``parameters`` (default: every trainable
    parameter) clipped to ±``clip_value`` first (0: none); the stepped parameters' gradients are cleared."""
    if clip_value > 0:
        torch.nn.utils.clip_grad_value_(trainable_parameters(net) if parameters is None else parameters, clip_value)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def initialise_new_blocks(
    net: MetamorphicNetwork, first: int, last: int, *, seed: int, stage: int, alpha_init: float, inr_init: bool
) -> None:
    """INRs of the new blocks first..last-1 (blocks 0..first-1 were trained in earlier stages), and their α.

    With ``inr_init``, a block whose predecessor has been trained starts as a copy of the predecessor's INRs
    (HTTY §3.3: "the final weights of its predecessor"); every other new block starts at random (a pure
    function of ``seed`` and ``stage``), so a non-incremental run (all blocks new in one stage) never copies
    an untrained INR into its neighbours.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, "inr-init", stage))
    for block in range(first, last):
        if net.alpha_scaling:
            net.alphas[block] = alpha_init
        predecessor_trained = 0 < block <= first
        for source, target in zip(net.block_layers(block - 1), net.block_layers(block), strict=True):  # its convs
            for bank in net.hyper.banks():
                if inr_init and predecessor_trained:
                    bank.copy_mlp(source, target)
                else:
                    bank.reset_mlp(target, generator)
                if net.base == "prior":  # a correction of the prior's weights: starts at zero
                    bank.zero_output(target)


def prefit_new_blocks(
    net: MetamorphicNetwork,
    first: int,
    last: int,
    *,
    seed: int,
    stage: int,
    steps: int,
    lr: float,
    coordinate_noise: float,
) -> dict[str, float]:
    """Warm start: fit the INRs of the new blocks first..last-1 to the prior's tensors by the relative
    reconstruction error alone (``steps`` Adam steps, cosine-decayed from ``lr``), at γ = 0 with the training
    coordinate noise; returns each fitted tensor's relative RMS error afterwards (nothing when ``steps`` is 0).

    Only the new blocks' MLPs move: the loss does not see the other MLPs, whose gradient slices stay zero,
    and Adam (no weight decay) leaves a parameter with zero moments unchanged. A pure function of ``seed`` and
    ``stage``, so every rank of a distributed run fits the same INRs.
    """
    if steps <= 0 or last <= first:
        return {}
    prefixes = tuple(
        f"{net.hyper.layers[index].module}." for block in range(first, last) for index in net.block_layers(block)
    )
    targets = {name: t for name, t in net.prior_tensors().items() if name.startswith(prefixes)}
    parameters = list(net.hyper.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(derive_seed(seed, "prefit-noise", stage))
    with torch.enable_grad():
        for _ in range(steps):
            weights = net.generate(0.0, noise=coordinate_noise, generator=generator)
            loss = reconstruction_error({name: weights[name] for name in targets}, targets, relative=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    errors = reconstruction_errors(net)
    return {name: errors[name] for name in targets}
