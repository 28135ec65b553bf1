"""One training loop for ordinary networks: the prior's pretraining and every baseline (a ResNet trained from
scratch, the pruning fine-tune, the skip network's head) train through :func:`fit`.

Cross-entropy on the shuffled batches of each epoch, one optimiser step per batch. What differs between them is
data, not code: the optimiser and how its learning rate moves (an :class:`Optimisation`), how many batches an
epoch reads, and what happens after each epoch (a callback: scoring, a checkpoint, result rows). The metamorphic
network's loop (:mod:`raymeta.stages.train`) is another shape: M configurations per step, a distributed seam.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raymeta.config.schema import Config
from raymeta.errors import ConfigError
from raymeta.io.data import epoch_batches
from raymeta.io.progress import Bar


@dataclass
class Optimisation:
    """An optimiser and how its learning rate moves.

    ``scheduler`` is stepped after every optimiser step (the prior's cosine decay, saved with its checkpoint);
    ``before_step(i)`` runs before step ``i`` (counted from the first step of :func:`fit`), e.g. a warm-up that
    sets the rate of that step. ``clip_value`` > 0 clips every gradient value of the optimiser's parameters.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    before_step: Callable[[int], object] | None = None
    clip_value: float = 0.0


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`fit` hands its per-epoch callback."""

    epoch: int
    """Epochs finished, counted from 1 (a resumed run counts the epochs before it too)."""
    train_loss: float
    """Mean cross-entropy of the epoch's training batches (weighted by batch size)."""
    seconds: float
    """Training seconds of this call of :func:`fit` so far; the callbacks' own time is not included."""


def batches_per_epoch(train_size: int, batch_size: int, *, drop_last: bool = False, most: int | None = None) -> int:
    """How many batches (so optimiser steps) one epoch of :func:`fit` takes: every batch of the training split,
    the partial last one unless ``drop_last``, at most ``most``. A ConfigError when that is none."""
    count = train_size // batch_size if drop_last else math.ceil(train_size / batch_size)
    if most is not None:
        count = min(count, most)
    if count < 1:
        raise ConfigError(f"data.batch_size={batch_size} is more than the {train_size} training examples: lower it")
    return count


def sgd_cosine(
    parameters: Iterable[torch.nn.Parameter], config: Config, *, lr: float, total_steps: int
) -> Optimisation:
    """The prior's recipe: SGD with Nesterov momentum (``pretrain.momentum``, ``pretrain.weight_decay``), its rate
    decayed from ``lr`` by a cosine over ``total_steps`` steps. Also the recipe of the individual baselines and of
    the pruning fine-tune, so that they differ from the prior only in their widths."""
    optimizer = torch.optim.SGD(
        parameters, lr=lr, momentum=config.pretrain.momentum, weight_decay=config.pretrain.weight_decay, nesterov=True
    )
    total = max(1, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    return Optimisation(optimizer, scheduler)


class CosineInTime:
    """A ``before_step`` that sets each group's rate to its initial rate times ``½(1 + cos(π·t/T))``, t the seconds
    since the first step and T = ``budget_s``: the prior's cosine decay spread over a time budget instead of a
    step count (a baseline trained for as long as another run trained)."""

    def __init__(self, optimizer: torch.optim.Optimizer, budget_s: float):
        self.optimizer, self.budget_s, self.start = optimizer, budget_s, None
        self.rates = [group["lr"] for group in optimizer.param_groups]

    def __call__(self, step: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()
        fraction = min(1.0, (time.perf_counter() - self.start) / self.budget_s)
        for group, rate in zip(self.optimizer.param_groups, self.rates, strict=True):
            group["lr"] = rate * 0.5 * (1 + math.cos(math.pi * fraction))


def sgd_cosine_in_time(parameters: Iterable[torch.nn.Parameter], config: Config, *, lr: float, budget_s: float):
    """:func:`sgd_cosine` with its decay over ``budget_s`` seconds (:class:`CosineInTime`): for :func:`fit` with
    that ``budget_s``."""
    if not budget_s > 0:
        raise ConfigError(f"a training budget of {budget_s!r} seconds is not allowed: it must be positive")
    optimizer = torch.optim.SGD(
        parameters, lr=lr, momentum=config.pretrain.momentum, weight_decay=config.pretrain.weight_decay, nesterov=True
    )
    return Optimisation(optimizer, before_step=CosineInTime(optimizer, budget_s))


def fit(
    model: torch.nn.Module,
    dataset,
    optimisation: Optimisation,
    *,
    batch_size: int,
    seed: int,
    epochs: range,
    device: torch.device,
    max_batches: int | None = None,
    drop_last: bool = False,
    budget_s: float | None = None,
    on_epoch: Callable[[EpochEnd], object] | None = None,
    label: str | None = None,
    progress=None,
) -> float:
    """Train ``model`` on ``dataset`` for the epochs ``epochs`` (``range(first, last)``: a resumed run starts
    after the epochs it has); returns the training seconds.

    Epoch ``e`` reads the :func:`~raymeta.io.data.epoch_batches` of (``seed``, ``e``), augmented as the dataset
    says and on the dataset's device (then moved to ``device``), its partial last batch unless ``drop_last``, at
    most ``max_batches`` of them. The model trains in train mode and is left in eval mode after each epoch, when
    ``on_epoch`` gets its :class:`EpochEnd`. With a ``label``, a :class:`~raymeta.io.progress.Bar` counts the
    steps (``progress`` prints its plain lines). With ``budget_s``, training stops after the first step that
    ends with the training seconds at or past it (``epochs`` is then an upper bound; the last epoch may be
    partial, and its callback still runs).
    """
    optimizer, scheduler = optimisation.optimizer, optimisation.scheduler
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    step, seconds = 0, 0.0
    bar = None
    if label is not None:
        per_epoch = batches_per_epoch(len(dataset), batch_size, drop_last=drop_last, most=max_batches)
        bar = Bar(len(epochs) * per_epoch, label, unit="step", progress=progress)
    out_of_time = False
    try:
        for epoch in epochs:
            if out_of_time:
                break
            start = time.perf_counter()
            model.train()
            running, seen = 0.0, 0
            epoch_data = epoch_batches(dataset, batch_size, seed=seed, epoch=epoch, drop_last=drop_last)
            count = len(epoch_data) if max_batches is None else min(max_batches, len(epoch_data))
            for images, labels in epoch_data.read(range(count)):
                if optimisation.before_step is not None:
                    optimisation.before_step(step)
                images, labels = images.to(device), labels.to(device)
                loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if optimisation.clip_value > 0:
                    torch.nn.utils.clip_grad_value_(parameters, optimisation.clip_value)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                running += loss.item() * len(labels)
                seen += len(labels)
                if bar is not None:
                    bar.update()
                if budget_s is not None and seconds + time.perf_counter() - start >= budget_s:
                    out_of_time = True
                    break
            model.eval()
            seconds += time.perf_counter() - start
            if on_epoch is not None:
                on_epoch(EpochEnd(epoch + 1, running / seen, seconds))
    finally:
        if bar is not None:
            bar.close()
    return seconds
