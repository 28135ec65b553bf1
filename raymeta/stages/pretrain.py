"""Train the prior: an ordinary ResNet with BatchNorm at γ = 0, saved with the configuration that made it.

With ``pretrain.init_from`` the prior starts from imported weights (:mod:`raymeta.io.weights`: a torchvision
model's zoo weights, a torch.hub entry, a state-dict file), which ``pretrain.epochs`` fine-tunes, or, at 0, keeps
as they are; either way the checkpoint records where they came from and the validation accuracy.

The checkpoint is rewritten (atomically) after every epoch, so an interrupted pretraining resumes where
it stopped, and a finished prior of the same configuration is reused rather than trained again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from raymeta.config.schema import Config
from raymeta.errors import ConfigError
from raymeta.io.artifacts import PretrainState, PriorCheckpoint
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.io.weights import import_weights
from raymeta.method.models import ResNet
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.fitting import EpochEnd, batches_per_epoch, fit, sgd_cosine
from raymeta.stages.runtime import (
    architecture,
    load_data,
    place_training_split,
    seed_everything,
    select_device,
    validation_loader,
)


def _accuracy_note(metrics: dict) -> str:
    """The note " (validation acc …)" on a prior's last metrics; nothing for a prior trained without a validation
    split (priors made before the validation split existed recorded test accuracy, named as such)."""
    for key, name in (("validation_accuracy", "validation"), ("test_accuracy", "test")):
        if key in metrics:
            return f" ({name} acc {metrics[key]:.4f})"
    return ""


def pretrain(
    config: Config,
    progress: Progress | None = None,
    *,
    resume: bool | None = None,
    stop_after_epochs: int | None = None,
) -> Path:
    """SGD with Nesterov momentum and cosine decay; checkpoint ``prior.pt`` every epoch.

    ``resume``: None continues (or reuses) a prior of the same configuration, True requires one,
    False trains afresh. ``stop_after_epochs`` ends this call after that many epochs (resumable).
    """
    progress = progress or Progress()
    path = RunPaths(config.run_dir).prior
    seed_everything(config.seed)
    device = select_device(config)
    bundle = place_training_split(load_data(config), config, device)
    arch = architecture(config, bundle.info)
    model = ResNet(arch).to(device)
    epochs = config.pretrain.epochs
    optimisation = sgd_cosine(
        model.parameters(),
        config,
        lr=config.pretrain.lr,
        total_steps=epochs * batches_per_epoch(len(bundle.train), config.data.batch_size),
    )
    optimizer, scheduler = optimisation.optimizer, optimisation.scheduler
    state = PretrainState()
    source = None

    if resume and not path.is_file():
        raise ConfigError(f"--resume: no prior checkpoint at {path}")
    if path.is_file() and resume is not False:
        saved = PriorCheckpoint.load(path, expect_hash=config.prior_hash())
        model.load_state_dict(saved.state_dict)
        state = saved.state
        if state.epoch >= epochs:
            progress(f"pretrain: reusing the finished prior {path}{_accuracy_note(saved.metrics)}")
            return path
        optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        torch.set_rng_state(saved.rng)
        source = saved.source
        progress(f"pretrain: resuming {path} after epoch {state.epoch}")
    elif config.pretrain.init_from:
        imported = import_weights(config.pretrain.init_from, arch, model.state_dict())
        model.load_state_dict(imported.state_dict)
        source = imported.provenance
        mapped = " (inputs mapped onto its normalisation)" if arch.input_scale is not None else ""
        progress(f"pretrain: the prior starts from {config.pretrain.init_from}{mapped}")

    held_out = f" / {len(bundle.validation)} validation" if bundle.validation is not None else ""
    progress(
        f"pretrain: ResNet-{arch.depth} {list(arch.widths)} on {bundle.info.name} "
        f"({len(bundle.train)} train{held_out} images), {epochs} epochs"
    )
    # Per-epoch accuracy on the validation split (none without one): the test split is for final evaluation.
    monitor_loader = validation_loader(bundle, config)

    def scored(metrics: dict) -> dict:
        """``metrics`` with the model's validation accuracy and loss (unchanged without a validation split)."""
        if monitor_loader is not None:
            accuracy, validation_loss = accuracy_and_loss(model, monitor_loader, device)
            metrics.update(validation_accuracy=accuracy, validation_loss=validation_loss)
        return metrics

    def save(state: PretrainState, metrics: dict, done: bool, **training) -> None:
        """The prior checkpoint of the model as it is now (``training``: optimiser, scheduler and RNG state)."""
        PriorCheckpoint(
            config=config.to_dict(),
            prior_hash=config.prior_hash(),
            arch=dataclasses.asdict(arch),
            dataset=dataclasses.asdict(bundle.info),
            state_dict=model.state_dict(),
            state=state,
            metrics=metrics,
            done=done,
            source=source,
            **training,
        ).save(path)

    if epochs == 0:  # the imported weights as they are: scored and saved
        metrics = scored({})
        save(PretrainState(0, []), metrics, True)
        progress(f"pretrain: saved the imported prior {path}{_accuracy_note(metrics)}")
        return path
    first = state.epoch
    last = epochs if stop_after_epochs is None else min(epochs, first + stop_after_epochs)

    def on_epoch(end: EpochEnd) -> None:
        """Score the epoch on the validation split and checkpoint it, so that a stop here resumes here."""
        nonlocal state
        metrics = scored({"train_loss": end.train_loss})
        state = PretrainState(end.epoch, [*state.history, metrics])
        save(
            state,
            metrics,
            end.epoch >= epochs,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=torch.get_rng_state(),
        )
        progress(
            f"pretrain epoch {end.epoch}/{epochs}  train loss {metrics['train_loss']:.4f}"
            + (
                f"  validation acc {metrics['validation_accuracy']:.4f}  validation loss "
                f"{metrics['validation_loss']:.4f}"
                if monitor_loader is not None
                else ""
            )
        )

    fit(
        model,
        bundle.train,
        optimisation,
        batch_size=config.data.batch_size,
        seed=config.seed,
        epochs=range(first, last),
        device=device,
        on_epoch=on_epoch,
    )
    if last < epochs:
        progress(f"pretrain: stopping after {last - first} epoch(s) as asked; run again to resume")
        return path
    progress(f"pretrain: saved {path}")
    return path
