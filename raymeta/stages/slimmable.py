"""``raymeta baseline slimmable``: the US-Nets baseline (:mod:`raymeta.method.slimmable`) of a run.

One network, started from the run's prior (the smoothed prior is BatchNorm-folded, and a slimmable network keeps
its BatchNorm), whose metamorphic blocks are sliced to ``hidden_width(C, γ)``; trained with the sandwich rule
over the run's training pool (``train.gamma_pool``, ``train.configs_per_step`` widths a step) and in-place
distillation, with the prior's SGD recipe from ``baseline.lr`` (null: ``baseline.finetune_lr``). By default it
trains for as many seconds as the metamorphic run of the same run folder trained (its rows' ``train_time_s``),
the learning rate decaying by a cosine over that time; with ``baseline.epochs`` for that many epochs instead.
Then, at every γ ≥ 0 of the grid (γ < 0 cannot be made by slicing), the sliced network's BatchNorm statistics
are recomputed on ``baseline.recalibration_batches`` training batches and it is scored on the test split.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from raymeta.config.schema import Config, short_hash
from raymeta.errors import ConfigError
from raymeta.io.artifacts import PriorCheckpoint, SmoothedCheckpoint
from raymeta.io.data import epoch_batches, make_loader
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.io.results import result_frame, write_table
from raymeta.method.models import ResNet, resolve_blocks
from raymeta.method.slimmable import SlimmableResNet, inplace_distillation, recalibrate_batchnorm, sandwich_gammas
from raymeta.seeds import derive_seed
from raymeta.stages.baseline_rows import evaluate_network, finished_baselines, required_train_seconds
from raymeta.stages.fitting import batches_per_epoch, sgd_cosine, sgd_cosine_in_time
from raymeta.stages.identity import run_identity
from raymeta.stages.networks import prior_network
from raymeta.stages.runtime import load_data, place_training_split, seed_everything


def train_slimmable(
    slim: SlimmableResNet,
    bundle,
    config: Config,
    *,
    lr: float,
    device: torch.device,
    budget_s: float | None = None,
    epochs: int | None = None,
    draws: list[list[float]] | None = None,
    progress: Progress | None = None,
) -> tuple[float, int]:
    """Train ``slim`` by the sandwich rule with in-place distillation for ``budget_s`` seconds or ``epochs``
    epochs (exactly one of them); returns (training seconds, epochs begun). Each step's γ are appended to
    ``draws`` when it is given.

    A step reads one shuffled batch of ``data.batch_size`` (the partial last one dropped: BatchNorm in training
    mode needs more than one image) and runs it at each width, widest first: the widest's loss is the
    cross-entropy with the labels, every other width's the cross-entropy with the widest's detached soft output;
    their gradients add up before one optimiser step (US-Nets).
    """
    if (budget_s is None) == (epochs is None):
        raise ValueError("train_slimmable needs exactly one of budget_s and epochs")
    train = config.train
    steps = batches_per_epoch(len(bundle.train), config.data.batch_size, drop_last=True)
    if budget_s is not None:
        optimisation = sgd_cosine_in_time(slim.parameters(), config, lr=lr, budget_s=budget_s)
    else:
        optimisation = sgd_cosine(slim.parameters(), config, lr=lr, total_steps=epochs * steps)
    optimizer = optimisation.optimizer
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "slimmable"))
    seconds, epoch, step = 0.0, 0, 0
    while (epochs is None or epoch < epochs) and (budget_s is None or seconds < budget_s):
        start = time.perf_counter()
        slim.train()
        running = 0.0
        batches = epoch_batches(bundle.train, config.data.batch_size, seed=config.seed, epoch=epoch, drop_last=True)
        for images, labels in batches.read(range(min(steps, len(batches)))):
            if optimisation.before_step is not None:
                optimisation.before_step(step)
            images, labels = images.to(device), labels.to(device)
            gammas = sandwich_gammas(train.gamma_pool, train.configs_per_step, generator)
            if draws is not None:
                draws.append(gammas)
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            for gamma in gammas:
                logits = slim(images, slim.hidden_widths(gamma))
                if teacher is None:
                    loss = F.cross_entropy(logits, labels)
                    teacher = logits.detach().softmax(dim=1)
                    running += loss.item()
                else:
                    loss = inplace_distillation(logits, teacher)
                loss.backward()
            optimizer.step()
            if optimisation.scheduler is not None:
                optimisation.scheduler.step()
            step += 1
            if budget_s is not None and seconds + time.perf_counter() - start >= budget_s:
                break
        slim.eval()
        seconds += time.perf_counter() - start
        epoch += 1
        if progress is not None:
            limit = f"{seconds:.0f}/{budget_s:.0f} s" if budget_s is not None else f"epoch {epoch}/{epochs}"
            progress(f"baseline slimmable: {limit}, {step} steps, widest's training loss {running / max(1, step):.4f}")
    return seconds, epoch


def run_slimmable(
    config: Config,
    prior: ResNet,
    blocks: list[tuple[int, int]],
    bundle,
    gammas: list[float],
    out: Path,
    *,
    run_name: str,
    budget_s: float | None,
    epochs: int | None,
    lr: float,
    recalibration_batches: int,
    device: torch.device,
    progress: Progress,
) -> list[Path]:
    """Train the slimmable network of ``prior`` and write one test row per γ ≥ 0 of ``gammas`` (one table);
    γ already written with the same settings are skipped."""
    pool = tuple(float(g) for g in config.train.gamma_pool)
    if pool[0] < 0:
        raise ConfigError(
            f"baseline slimmable trains by slicing, which cannot widen a block: train.gamma_pool={list(pool)} "
            "starts below 0; use a pool within [0, 1)"
        )
    if config.train.configs_per_step < 2:
        raise ConfigError(
            f"train.configs_per_step={config.train.configs_per_step} is not allowed for baseline slimmable: the "
            "sandwich rule runs the widest and the narrowest width every step, so it needs 2 or more"
        )
    wider = [g for g in gammas if g < 0]
    gammas = [g for g in gammas if g >= 0]
    if wider:
        progress(
            f"baseline slimmable: γ={', '.join(f'{g:g}' for g in wider)} skipped (slicing cannot widen a block); "
            "no rows for them"
        )
    if not gammas:
        raise ConfigError("baseline slimmable needs at least one γ ≥ 0 (slicing cannot make a block wider)")
    seed_everything(config.seed)
    slim = SlimmableResNet(prior, blocks).to(device)
    for gamma in gammas:
        slim.hidden_widths(gamma)  # a bad γ fails before any training
    cost = {"budget_s": round(budget_s, 3)} if budget_s is not None else {"epochs": epochs}
    settings_hash = short_hash(
        {
            "config": config.hash(),
            "baseline": "slimmable",
            **cost,
            "lr": lr,
            "recalibration_batches": recalibration_batches,
        }
    )
    done = finished_baselines(out, settings_hash)
    todo = [g for g in gammas if ("slimmable", round(float(g), 9)) not in done]
    if not todo:
        progress(f"baseline slimmable: every γ already in {out}, skipped")
        return []
    what = f"{budget_s:.0f} s (the metamorphic run's training time)" if budget_s is not None else f"{epochs} epoch(s)"
    progress(
        f"baseline slimmable: sandwich rule over γ ∈ [{pool[0]:g}, {pool[1]:g}], {config.train.configs_per_step} "
        f"widths a step, in-place distillation, for {what}"
    )
    seconds, epochs_run = train_slimmable(
        slim, bundle, config, lr=lr, device=device, budget_s=budget_s, epochs=epochs, progress=progress
    )
    first = epoch_batches(bundle.train, config.data.batch_size, seed=config.seed, epoch=0, drop_last=True)
    calibration = [first[position] for position in range(min(recalibration_batches, len(first)))]
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    rows = []
    for gamma in todo:
        widths = slim.hidden_widths(gamma)
        model = slim.sliced(widths)
        recalibrate_batchnorm(model, calibration, device)
        rows.append(evaluate_network(model, test_loader, device, gamma, widths, bundle.info.image_size))
        progress(f"baseline slimmable γ={gamma:g}: accuracy {rows[-1]['accuracy']:.4f}")
    budget = budget_s if budget_s is not None else math.nan
    for row in rows:
        row["train_budget_s"] = budget
    identity = run_identity(
        config,
        method="slimmable",
        run_id=f"{run_name}/slimmable",
        dataset=bundle.info.name,
        config_hash=settings_hash,
    )
    frame = result_frame(rows, identity, stage=0, epoch=epochs_run, split="test", train_time_s=seconds)
    name = f"slimmable-{settings_hash}-{short_hash(sorted(float(g) for g in todo))}.parquet"
    path = write_table(frame, out, name=name)
    progress(f"baseline slimmable: {len(rows)} γ after {seconds:.1f}s of training → {path}")
    return [path]


def slimmable_start(run_dir: str | Path) -> tuple[ResNet, str]:
    """The network a slimmable baseline starts from, and its name: the smoothed prior if its checkpoint keeps
    BatchNorm (which slimming needs, to recalibrate per width), else the prior (raymeta's smoothed prior is
    BatchNorm-folded)."""
    paths = RunPaths(str(run_dir))
    if paths.smoothed.is_file():
        smoothed = SmoothedCheckpoint.load(paths.smoothed)
        if getattr(smoothed, "batchnorm", False):
            return prior_network(smoothed), "the smoothed prior"
    return prior_network(PriorCheckpoint.load(paths.prior).require_done(paths.prior)), "the prior (with BatchNorm)"


def run_slimmable_baseline(
    config: Config, gammas: list[float], out: Path, *, run_name: str, device: torch.device, progress: Progress
) -> list[Path]:
    """``raymeta baseline slimmable``: :func:`run_slimmable` from :func:`slimmable_start`, for the metamorphic run's
    training time (``baseline.epochs`` null) or ``baseline.epochs`` epochs."""
    settings = config.baseline
    start, what = slimmable_start(config.run_dir)
    budget = None
    if settings.epochs is None:
        budget = required_train_seconds(config.run_dir, "baseline slimmable", "train by epochs (--epochs N)")
    bundle = place_training_split(load_data(config), config, device)
    progress(f"baseline slimmable: starting from {what}")
    return run_slimmable(
        config,
        start,
        resolve_blocks(config.train.blocks, start.arch),
        bundle,
        gammas,
        out,
        run_name=run_name,
        budget_s=budget,
        epochs=settings.epochs,
        lr=settings.lr or settings.finetune_lr,
        recalibration_batches=settings.recalibration_batches,
        device=device,
        progress=progress,
    )
