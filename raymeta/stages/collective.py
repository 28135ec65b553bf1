"""The distributed seam of a training step: how its M configurations are shared out over the ranks of a run, and
how the ranks combine their gradients and start from the same weights.

The single process is rank 0 of 1 (:class:`Collective`, nothing to combine); the distributed driver substitutes
:class:`raymeta.drivers.distributed.TorchCollective`. A step is the same code for both: each rank backwards its
own :class:`WorkUnit` s (:func:`accumulate_gradients`, each scaled by 1/M, so the units summed over ranks
equal the whole step), the gradients are summed (:func:`synchronise_gradients`), and every rank applies the
identical update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raymeta.errors import ConfigError
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.objective import Objective, autocast, configuration_loss
from raymeta.method.sampling import noise_generator
from raymeta.method.widths import Gamma


class Collective:
    """How the ranks of a run combine their work. The single process is rank 0 of 1: nothing to combine.

    ``Collective(round_size=N)`` is the single process computing what N workers compute where the step runs in
    rounds (``train.head_updates: per_configuration``: :func:`my_rounds`), as a check of the layout."""

    rank = 0
    world_size = 1
    _round_size: int | None = None

    def __init__(self, round_size: int | None = None):
        self._round_size = round_size

    @property
    def round_size(self) -> int:
        """Work units per round of a step: one per rank."""
        return self.world_size if self._round_size is None else self._round_size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_gather_object(self, value) -> list:
        return [value]


@dataclass(frozen=True)
class WorkUnit:
    """One configuration of a step (index, γ), or one of ``slices`` equal parts of its micro-batch."""

    index: int
    gamma: Gamma
    slice: int = 0
    slices: int = 1

    def rows(self, batch_size: int) -> slice:
        return slice(self.slice * batch_size // self.slices, (self.slice + 1) * batch_size // self.slices)


def my_configurations(gammas: list[Gamma], rank: int, world_size: int) -> list[WorkUnit]:
    """The work of rank ``rank`` of ``world_size`` in one step of M = len(gammas) configurations.

    With N ≤ M workers, rank r runs whole configurations r, r+N, …. With N > M, each configuration's
    micro-batch is cut into S = ⌈N/M⌉ equal slices and the M·S units (configuration-major) are dealt out the
    same way; a slice's loss is weighted by its share of the batch, so the units always sum to the whole step.
    """
    return [
        WorkUnit(index, gammas[index], part, slices) for index, part, slices in _my_slots(len(gammas), rank, world_size)
    ]


def _my_slots(configs_per_step: int, rank: int, world_size: int) -> list[tuple[int, int, int]]:
    """(configuration index, slice, slices) of each unit of rank ``rank``: :func:`my_configurations` without the γ."""
    slices = -(-world_size // configs_per_step)
    units = [(index, part, slices) for index in range(configs_per_step) for part in range(slices)]
    return units[rank::world_size]


def my_rounds(units: list[WorkUnit], configs_per_step: int, round_size: int, world_size: int) -> list[list[int]]:
    """The rounds of a step on this rank: for each, the positions in ``units`` (this rank's, from
    :func:`my_configurations`) that it runs, possibly none. Every rank runs the same number of rounds.

    The step's units, configuration-major, are cut into rounds of ``round_size`` consecutive units; with
    ``round_size`` = N workers, round j holds the j-th unit of every rank (rank r's units are r, r+N, …). So N
    workers compute, round by round, what one process computes with ``round_size`` = N; with one process and
    ``round_size`` = 1 each configuration is a round of its own.
    """
    slices = -(-world_size // configs_per_step)
    count = -(-configs_per_step * slices // round_size)
    rounds: list[list[int]] = [[] for _ in range(count)]
    for position, unit in enumerate(units):
        rounds[(unit.index * unit.slices + unit.slice) // round_size].append(position)
    return rounds


def my_batch_positions(steps: int, configs_per_step: int, rank: int, world_size: int) -> list[int]:
    """The positions in an epoch's training batches that rank ``rank`` reads, in the order it reads them:
    configuration k of step s reads batch s·M + k, so a rank reads (and decodes) only its own configurations'
    micro-batches, its shard of the epoch. Which configurations a rank runs never depends on their γ."""
    slots = _my_slots(configs_per_step, rank, world_size)
    return [step * configs_per_step + index for step in range(steps) for index, _, _ in slots]


def steps_per_epoch(examples: int, batch_size: int, configs_per_step: int, cap: int | None, world_size: int) -> int:
    """Optimiser steps in an epoch over ``examples``: each reads M micro-batches of ``batch_size`` (none read twice),
    at most ``cap`` (``train.steps_per_epoch``). Refuses too few examples for one step, and more workers than the
    step's micro-batches can be cut for (a slice needs one example at least)."""
    slices = -(-world_size // configs_per_step)
    if slices > batch_size:
        raise ConfigError(
            f"{world_size} workers would cut each micro-batch of data.batch_size={batch_size} into "
            f"{slices} slices: use at most {configs_per_step * batch_size} workers"
        )
    steps = examples // batch_size // configs_per_step
    steps = min(steps, cap) if cap is not None else steps
    if steps < 1:
        raise ConfigError(
            f"data.batch_size={batch_size} × train.configs_per_step={configs_per_step} needs more than "
            f"the {examples} training examples: lower either"
        )
    return steps


def accumulate_gradients(
    net: MetamorphicNetwork,
    step: int,
    units: list[WorkUnit],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    total_configs: int,
    objective: Objective,
    seed: int,
    device: torch.device,
    teacher: torch.nn.Module | None = None,
) -> dict[str, float]:
    """Backward each unit on its micro-batch (or its slice of it), scaled by 1/M; the sum of the loss parts.

    A unit is a whole configuration or a slice of one; ``batches`` holds each unit's whole micro-batch. The
    coordinate noise of a unit is drawn from the run's ``seed``, the step and the configuration's index, so it
    is the same whichever rank runs it. ``teacher`` (the frozen prior) gives the distillation targets; it runs on
    from the network's frozen prefix (:meth:`MetamorphicNetwork.teacher_logits`), computed once for both.

    Each configuration is generated on its own, on every rank alike: generating a rank's configurations in one
    INR pass was measured no faster (benchmarks/RESULTS.md, 2026-12-03), and its rounding would differ between a
    rank holding two configurations and two ranks holding one each.
    """
    sums: dict[str, float] = {}
    for unit, (images, labels) in zip(units, batches, strict=True):
        whole = len(labels)
        rows = unit.rows(whole)
        images, labels = images[rows].to(device), labels[rows].to(device)
        with autocast(objective.precision, device):
            prefix = net.frozen_prefix(images)
            teacher_logits = None if teacher is None else net.teacher_logits(teacher, prefix).float()
        loss, parts = configuration_loss(
            net,
            unit.gamma,
            images,
            labels,
            objective,
            noise_generator(seed, step, unit.index),
            share=len(labels) / whole,
            weight_terms=unit.slice == 0,
            teacher_logits=teacher_logits,
            prefix=prefix,
        )
        (loss / total_configs).backward()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return sums


def synchronise_gradients(parameters: list[torch.nn.Parameter], collective: Collective) -> None:
    """Sum every rank's gradients (one all-reduce of one flat vector).

    A parameter no rank touched keeps ``grad = None`` (as in one process, where AdamW then skips it); one
    that some rank touched gets the sum, with zeros from the ranks that did not.
    """
    if collective.world_size == 1:
        return
    flat = [
        p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
        for p in parameters
    ]
    touched = torch.tensor([p.grad is not None for p in parameters], dtype=flat[0].dtype, device=flat[0].device)
    vector = collective.all_reduce_sum(torch.cat([*flat, touched]))
    touched = vector[-len(parameters) :]
    offset = 0
    for parameter, was_touched in zip(parameters, touched.tolist(), strict=True):
        count = parameter.numel()
        parameter.grad = vector[offset : offset + count].view_as(parameter).clone() if was_touched else None
        offset += count


def synchronise_parameters(net: MetamorphicNetwork, collective: Collective) -> None:
    """Every rank starts from rank 0's weights (all of them, trainable or not)."""
    if collective.world_size == 1:
        return
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            tensor.copy_(collective.broadcast(tensor.detach().clone()))
