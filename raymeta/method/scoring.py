"""Scoring: top-1 accuracy and mean cross-entropy of a classifier over batches of (inputs, labels).

The one loop every stage scores with (evaluation at each γ, the deploy search's candidates, the baselines, the
prior's per-epoch validation): a batch's loss is summed with ``reduction="sum"`` and divided once by the number of
examples, so a score does not depend on how the examples are cut into batches beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

Model = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def accuracy_and_loss(
    model: Model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str | None = None
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over ``batches`` (a loader, or any iterable of
    (inputs, labels)); each batch is moved to ``device`` first unless it is None."""
    return accuracies_and_losses([model], batches, device)[0]


@torch.no_grad()
def accuracies_and_losses(
    models: list[Model],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str | None = None,
    prepare: Model | None = None,
) -> list[tuple[float, float]]:
    """:func:`accuracy_and_loss` of several models in one pass over ``batches``; ``prepare`` (e.g. a frozen prefix
    they share) runs once per batch and every model gets its output."""
    correct, loss, total = [0] * len(models), [0.0] * len(models), 0
    for inputs, labels in batches:
        if device is not None:
            inputs, labels = inputs.to(device), labels.to(device)
        if prepare is not None:
            inputs = prepare(inputs)
        for index, model in enumerate(models):
            logits = model(inputs)
            loss[index] += F.cross_entropy(logits, labels, reduction="sum").item()
            correct[index] += (logits.argmax(dim=1) == labels).sum().item()
        total += len(labels)
    if total == 0:
        raise ValueError("cannot score a model on no examples: the batches were empty")
    return [(right / total, summed / total) for right, summed in zip(correct, loss, strict=True)]
