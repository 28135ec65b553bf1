"""Baselines at the same γ as the metamorphic network: individually trained and pruned ResNets, and the skip floor.

The first two change only what a metamorphic block changes: the hidden width of every block that the run's
``train.blocks`` makes metamorphic, ``hidden_width(C, γ)``. Everything else keeps the prior's shape.

* **Individual**: an ordinary ResNet (with BatchNorm) trained from scratch at each γ with the prior's recipe.
* **Pruning**: the prior pruned to each γ with Torch-Pruning (DepGraph): the lowest-scored output channels
  of each metamorphic block's conv1 (and a Bottleneck's conv2) are removed, and DepGraph removes the matching
  BatchNorm channels and the next conv's input channels. Torch-Pruning rather than our own index bookkeeping because it is the reference the
  paper compares against (same importance criteria), and its dependency graph guarantees the coupled
  layers stay consistent. Each block is pruned as its own group to an exact width, so the result always
  has the hidden widths the metamorphic network generates at that γ (a global pruning ratio would not).
* **Skip**: the smoothed prior (the network the metamorphic one is built from) with every metamorphic block's
  residual branch removed, so each is the identity, which is the metamorphic network with every α = 0. Its
  fine-tuned part (what the metamorphic run fine-tunes: the last block unless it is metamorphic, and the
  classifier; nothing with ``train.finetune_head`` off) is trained as the metamorphic run trains it. It does not
  depend on γ: a metamorphic network that does not beat it has learnt nothing in its generated blocks that
  the rest of the network could not do without them. Its rows repeat one evaluation at every γ of the grid,
  a flat reference line.

Rows are written in the results schema: final rows on the test split, an individual network's per-epoch
rows on the validation split (nothing is chosen on the test split); ``train_time_s`` is the baseline's own
training cost (individual: training from scratch; pruning: gradients for the importance plus the
fine-tune). The prior's pretraining is not included: metamorphic, NeuMeta and pruning rows all start from
the same prior.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from raymeta.config.schema import Config, method_name, short_hash
from raymeta.errors import CheckpointError, ConfigError
from raymeta.io.artifacts import PriorCheckpoint, SmoothedCheckpoint
from raymeta.io.data import epoch_batches, make_loader
from raymeta.io.files import RunPaths, require_local, save_config
from raymeta.io.progress import Bar, Progress
from raymeta.io.results import result_frame, write_table
from raymeta.method.models import (
    Architecture,
    ResNet,
    block_convs,
    block_name,
    count_params_macs,
    hidden_width,
    resolve_blocks,
)
from raymeta.method.schedule import plan_stages, set_warmup
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.baseline_rows import (
    evaluate_network,
    finished_baselines,
    required_train_seconds,
)
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.fitting import EpochEnd, Optimisation, batches_per_epoch, fit, sgd_cosine, sgd_cosine_in_time
from raymeta.stages.identity import calibrated_method, run_identity
from raymeta.stages.monitor import monitor_gammas
from raymeta.stages.networks import build_network, load_trained, prior_network
from raymeta.stages.runtime import (
    architecture,
    calibration_images,
    load_data,
    place_training_split,
    seed_everything,
    select_device,
    validation_loader,
)
from raymeta.stages.slimmable import run_slimmable_baseline

IMPORTANCES = ("random", "l1", "l2", "taylor", "hessian")
"""Torch-Pruning importance criteria offered by ``raymeta baseline prune``."""

NEEDS_GRADIENTS = {"taylor", "hessian"}

CPU = torch.device("cpu")
"""The default device of the functions that take one."""


def target_widths(arch: Architecture, blocks: list[tuple[int, int]], gamma: float) -> dict[tuple[int, int], int]:
    """Hidden width of every metamorphic block at γ (the other blocks keep their full width)."""
    return {(s, b): hidden_width(arch.widths[s], gamma) for s, b in blocks}


def metamorphic_blocks(config: Config, arch: Architecture) -> list[tuple[int, int]]:
    return resolve_blocks(config.train.blocks, arch)


def check_importances(names: list[str]) -> list[str]:
    expanded: list[str] = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip().lower()
            if part == "all":
                expanded += [n for n in IMPORTANCES if n not in expanded]
            elif part in IMPORTANCES:
                if part not in expanded:
                    expanded.append(part)
            elif part:
                raise ConfigError(
                    f"pruning importance {part!r} is unknown: allowed are {', '.join(IMPORTANCES)} or all"
                )
    if not expanded:
        raise ConfigError(f"no pruning importance given: allowed are {', '.join(IMPORTANCES)} or all")
    return expanded


def make_importance(name: str):
    import torch_pruning as tp

    factories = {
        "random": tp.importance.RandomImportance,
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": tp.importance.GroupTaylorImportance,
        "hessian": tp.importance.GroupHessianImportance,
    }
    if name not in factories:
        raise ConfigError(f"pruning importance {name!r} is unknown: allowed are {', '.join(IMPORTANCES)}")
    return factories[name]()


def store_gradients(
    model: ResNet,
    importance: str,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    hessian_samples: int = 64,
) -> None:
    """Leave in ``param.grad`` what the importance reads: the loss gradient (Taylor) or the mean squared
    per-example gradient, the diagonal empirical Fisher that approximates the Hessian (OBD).

    Torch-Pruning 1.6.1's ``HessianImportance.accumulate_grad`` keys its dict by parameter but tests the
    name, so it keeps only the last example's gradient; we accumulate here and hand it ``.grad`` directly.
    """
    model.eval()  # BatchNorm with running statistics: per-example gradients of a batch of one are meaningful
    model.zero_grad(set_to_none=True)
    if importance == "taylor":
        for images, labels in batches:
            loss = F.cross_entropy(model(images.to(device)), labels.to(device)) / len(batches)
            loss.backward()
        return
    images = torch.cat([x for x, _ in batches])[:hessian_samples].to(device)
    labels = torch.cat([y for _, y in batches])[:hessian_samples].to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    squares = [torch.zeros_like(p) for p in parameters]
    for index in range(len(images)):
        loss = F.cross_entropy(model(images[index : index + 1]), labels[index : index + 1])
        grads = torch.autograd.grad(loss, parameters)
        for total, grad in zip(squares, grads, strict=True):
            total += grad.pow(2)
    for parameter, total in zip(parameters, squares, strict=True):
        parameter.grad = total / len(images)


def prune_to_gamma(
    prior: ResNet,
    blocks: list[tuple[int, int]],
    gamma: float,
    importance: str,
    *,
    batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: torch.device = CPU,
    seed: int = 0,
) -> ResNet:
    """A copy of ``prior`` whose metamorphic blocks are pruned to exactly ``hidden_width(C, γ)`` channels."""
    import torch_pruning as tp

    widths = target_widths(prior.arch, blocks, gamma)
    for (s, b), width in widths.items():
        if width > prior.arch.widths[s]:
            raise ConfigError(
                f"pruning cannot widen a block: γ={gamma} asks for {width} hidden channels in "
                f"{block_name(s, b)} of width {prior.arch.widths[s]}; allowed is γ ≥ 0"
            )
    model = copy.deepcopy(prior).to(device)
    if importance in NEEDS_GRADIENTS:
        if not batches:
            raise ConfigError(f"{importance} importance needs a few batches of training data for its gradients")
        store_gradients(model, importance, batches, device)
    scorer = make_importance(importance)
    torch.manual_seed(seed)  # RandomImportance draws from torch's global generator
    example = torch.zeros(1, prior.arch.in_channels, 8, 8, device=device)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    plans = []
    hidden_outputs = [conv.name for conv in block_convs(prior.arch) if conv.hidden_out]  # a Bottleneck has two
    for (s, b), width in widths.items():  # score every block before pruning any, on the unpruned network
        for name in hidden_outputs:
            conv = model.block(s, b).get_submodule(name)
            if width == conv.out_channels:
                continue
            group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
            scores = scorer(group)
            if scores is None:
                raise RuntimeError(f"{importance} importance gave no score for {block_name(s, b)}.{name}")
            drop = torch.argsort(scores.detach().cpu(), stable=True)[: conv.out_channels - width]
            plans.append((conv, sorted(int(i) for i in drop)))
    for conv, drop in plans:
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop)
        group.prune()
    model.zero_grad(set_to_none=True)
    # Rebuild as a plain ResNet of the expected shape: load_state_dict fails unless every width is exact.
    pruned = ResNet(prior.arch, batchnorm=prior.batchnorm, hidden_widths=widths)
    pruned.load_state_dict(model.state_dict())
    return pruned.eval()


def train_like_the_prior(
    model: ResNet,
    bundle,
    config: Config,
    *,
    epochs: int,
    lr: float,
    device: torch.device,
    on_epoch: Callable[[EpochEnd], object] | None = None,
    label: str | None = None,
    progress=None,
) -> float:
    """Train ``model`` with the prior's recipe (:func:`~raymeta.stages.fitting.sgd_cosine` from ``lr`` over
    ``epochs``); returns training seconds.

    Without the prior's per-epoch checkpoints: a baseline network is cheap to retrain, and the finished rows are
    what the sweep resumes from.
    """
    steps = batches_per_epoch(len(bundle.train), config.data.batch_size)
    optimisation = sgd_cosine(model.parameters(), config, lr=lr, total_steps=epochs * steps)
    return fit(
        model,
        bundle.train,
        optimisation,
        batch_size=config.data.batch_size,
        seed=config.seed,
        epochs=range(epochs),
        device=device,
        on_epoch=on_epoch,
        label=label,
        progress=progress,
    )


def finetune_for(
    model: ResNet, bundle, config: Config, *, budget_s: float, lr: float, device: torch.device
) -> tuple[float, int]:
    """Fine-tune ``model`` with the prior's recipe for ``budget_s`` seconds, its cosine decay spread over that time
    (:func:`~raymeta.stages.fitting.sgd_cosine_in_time`); returns (training seconds, epochs begun)."""
    optimisation = sgd_cosine_in_time(model.parameters(), config, lr=lr, budget_s=budget_s)
    ends: list[EpochEnd] = []
    seconds = fit(
        model,
        bundle.train,
        optimisation,
        batch_size=config.data.batch_size,
        seed=config.seed,
        epochs=range(1_000_000),
        device=device,
        budget_s=budget_s,
        on_epoch=ends.append,
    )
    return seconds, len(ends)


def _validation_curve(model, loader, device, gamma, widths, image_size, identity, curve, progress, epochs):
    """The per-epoch callback of an individual network: its validation row appended to ``curve`` (None without a
    validation split)."""
    if loader is None:
        return None

    def on_epoch(end: EpochEnd) -> None:
        row = evaluate_network(model, loader, device, gamma, widths, image_size)
        curve.append(
            result_frame(
                [row], identity, stage=0, epoch=end.epoch, phase="train", split="validation", train_time_s=end.seconds
            )
        )
        progress(f"baseline individual γ={gamma:g}: epoch {end.epoch}/{epochs}  validation acc {row['accuracy']:.4f}")

    return on_epoch


def run_individual(
    config: Config,
    bundle,
    gammas: list[float],
    out: Path,
    *,
    run_name: str,
    epochs: int,
    lr: float,
    device: torch.device,
    progress: Progress,
) -> list[Path]:
    """Train an ordinary ResNet from scratch at each γ; one table per γ (finished γ are skipped).

    Each epoch is scored on the validation split (rows phase = train, split = validation; none without a
    validation split); the trained network once on the test split (phase = final, split = test).
    """
    arch = architecture(config, bundle.info)
    blocks = metamorphic_blocks(config, arch)
    for gamma in gammas:
        target_widths(arch, blocks, gamma)  # fail on a bad γ before any training
    settings_hash = short_hash({"config": config.hash(), "baseline": "individual", "epochs": epochs, "lr": lr})
    done = finished_baselines(out, settings_hash)
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    monitor_loader = validation_loader(bundle, config, progress, "baseline individual: no per-epoch accuracy")
    written = []
    for gamma in gammas:
        if ("individual", round(float(gamma), 9)) in done:
            progress(f"baseline individual: γ={gamma:g} already in {out}, skipped")
            continue
        widths = target_widths(arch, blocks, gamma)
        seed_everything(config.seed)
        model = ResNet(arch, batchnorm=True, hidden_widths=widths).to(device)
        identity = run_identity(
            config,
            method="individual",
            run_id=f"{run_name}/individual/gamma={gamma:g}",
            dataset=bundle.info.name,
            config_hash=settings_hash,
        )
        curve: list[pd.DataFrame] = []
        on_epoch = _validation_curve(
            model,
            monitor_loader,
            device,
            gamma,
            widths,
            bundle.info.image_size,
            identity,
            curve,
            progress,
            epochs,
        )
        seconds = train_like_the_prior(
            model,
            bundle,
            config,
            epochs=epochs,
            lr=lr,
            device=device,
            on_epoch=on_epoch,
            label=f"baseline individual γ={gamma:g}",
            progress=progress,
        )
        row = evaluate_network(model, test_loader, device, gamma, widths, bundle.info.image_size)
        final = result_frame([row], identity, stage=0, epoch=epochs, split="test", train_time_s=seconds)
        written.append(
            write_table(
                pd.concat([*curve, final], ignore_index=True),
                out,
                name=f"individual-gamma={gamma:g}-{settings_hash}.parquet",
            )
        )
        progress(
            f"baseline individual γ={gamma:g}: accuracy {row['accuracy']:.4f} after {seconds:.1f}s → {written[-1]}"
        )
    return written


def run_pruning(
    config: Config,
    prior: ResNet,
    bundle,
    gammas: list[float],
    importances: list[str],
    out: Path,
    *,
    run_name: str,
    finetune_epochs: int,
    finetune_lr: float,
    gradient_batches: int,
    device: torch.device,
    progress: Progress,
    finetune_budget_s: float | None = None,
) -> list[Path]:
    """Prune the prior to each γ with each importance; evaluate as pruned and (optionally) fine-tuned for
    ``finetune_epochs`` (rows X+ft) and for ``finetune_budget_s`` seconds (rows X+ft-equal, with the budget in
    ``train_budget_s``)."""
    blocks = metamorphic_blocks(config, prior.arch)
    wider = [g for g in gammas if g < 0]
    gammas = [g for g in gammas if g >= 0]
    if wider:
        progress(f"baseline prune: γ={', '.join(f'{g:g}' for g in wider)} skipped (pruning cannot widen a block)")
    if not gammas:
        raise ConfigError("baseline prune needs at least one γ ≥ 0 (pruning cannot make a block wider)")
    for gamma in gammas:
        target_widths(prior.arch, blocks, gamma)
    settings_hash = short_hash(
        {
            "config": config.hash(),
            "baseline": "prune",
            "finetune_epochs": finetune_epochs,
            "finetune_lr": finetune_lr,
            "gradient_batches": gradient_batches,
        }
    )
    done = finished_baselines(out, settings_hash)
    equal_hash, done_equal = None, set()
    if finetune_budget_s is not None:
        equal_hash = short_hash(
            {
                "config": config.hash(),
                "baseline": "prune",
                "finetune_budget_s": round(finetune_budget_s, 3),
                "finetune_lr": finetune_lr,
                "gradient_batches": gradient_batches,
            }
        )
        done_equal = finished_baselines(out, equal_hash)
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    first_epoch = epoch_batches(bundle.train, config.data.batch_size, seed=config.seed, epoch=0, drop_last=False)
    batches = [first_epoch[position] for position in range(min(gradient_batches, len(first_epoch)))]
    written = []
    with Bar(len(importances) * len(gammas), "baseline prune", unit="network", progress=progress) as bar:
        for importance in importances:
            for gamma in gammas:
                method = f"prune-{importance}"
                key = round(float(gamma), 9)
                wanted = [method] + ([f"{method}+ft"] if finetune_epochs > 0 else [])
                plain = not all((m, key) in done for m in wanted)
                equal = equal_hash is not None and (f"{method}+ft-equal", key) not in done_equal
                if not plain and not equal:
                    progress(f"baseline prune: {method} γ={gamma:g} already in {out}, skipped")
                    bar.update()
                    continue
                widths = target_widths(prior.arch, blocks, gamma)
                start = time.perf_counter()
                model = prune_to_gamma(
                    prior, blocks, gamma, importance, batches=batches, device=device, seed=config.seed
                ).to(device)
                prune_seconds = time.perf_counter() - start
                pruned = copy.deepcopy(model) if equal else None  # each fine-tune starts from the pruned network
                message = f"baseline prune: {method} γ={gamma:g}:" + ("" if plain else " (pruned rows already there)")
                if plain:
                    row = evaluate_network(model, test_loader, device, gamma, widths, bundle.info.image_size)
                    identity = run_identity(
                        config,
                        method=method,
                        run_id=f"{run_name}/{method}/gamma={gamma:g}",
                        dataset=bundle.info.name,
                        config_hash=settings_hash,
                    )
                    frames = [result_frame([row], identity, stage=0, epoch=0, split="test", train_time_s=prune_seconds)]
                    message += f" accuracy {row['accuracy']:.4f}"
                    if finetune_epochs > 0:
                        seconds = train_like_the_prior(
                            model, bundle, config, epochs=finetune_epochs, lr=finetune_lr, device=device
                        )
                        tuned = evaluate_network(model, test_loader, device, gamma, widths, bundle.info.image_size)
                        tuned_identity = run_identity(
                            config,
                            method=f"{method}+ft",
                            run_id=f"{run_name}/{method}+ft/gamma={gamma:g}",
                            dataset=bundle.info.name,
                            config_hash=settings_hash,
                        )
                        frames.append(
                            result_frame(
                                [tuned],
                                tuned_identity,
                                stage=0,
                                epoch=finetune_epochs,
                                split="test",
                                train_time_s=prune_seconds + seconds,
                            )
                        )
                        message += f", fine-tuned {tuned['accuracy']:.4f} ({seconds:.1f}s)"
                    written.append(
                        write_table(
                            pd.concat(frames, ignore_index=True),
                            out,
                            name=f"{method}-gamma={gamma:g}-{settings_hash}.parquet",
                        )
                    )
                if equal:
                    seconds, epochs_begun = finetune_for(
                        pruned, bundle, config, budget_s=finetune_budget_s, lr=finetune_lr, device=device
                    )
                    tuned = evaluate_network(pruned, test_loader, device, gamma, widths, bundle.info.image_size)
                    tuned["train_budget_s"] = finetune_budget_s
                    equal_identity = run_identity(
                        config,
                        method=f"{method}+ft-equal",
                        run_id=f"{run_name}/{method}+ft-equal/gamma={gamma:g}",
                        dataset=bundle.info.name,
                        config_hash=equal_hash,
                    )
                    frame = result_frame(
                        [tuned],
                        equal_identity,
                        stage=0,
                        epoch=epochs_begun,
                        split="test",
                        train_time_s=prune_seconds + seconds,
                    )
                    written.append(
                        write_table(frame, out, name=f"{method}+ft-equal-gamma={gamma:g}-{equal_hash}.parquet")
                    )
                    message += (
                        f"{';' if plain else ''} fine-tuned for the equal budget {tuned['accuracy']:.4f} "
                        f"({seconds:.1f}s, {epochs_begun} epoch(s))"
                    )
                progress(message)
                bar.update()
    return written


# ---- skip: the metamorphic blocks removed -----------------------------------------------------------


def load_smoothed_prior(run_dir: str | Path, what: str = "baseline skip") -> ResNet:
    """The run's smoothed, BatchNorm-folded prior: the network its metamorphic network is built from."""
    path = RunPaths(str(run_dir)).smoothed
    if not path.is_file():
        raise CheckpointError(
            f"{what} needs the run's smoothed prior {path}, which does not exist: run "
            f"`raymeta smooth --run-dir {run_dir}` first (after `raymeta pretrain`), or "
            f"`raymeta run`"
        )
    return prior_network(SmoothedCheckpoint.load(path))


def skip_network(prior: ResNet, blocks: list[tuple[int, int]]) -> ResNet:
    """A copy of the (BN-free) prior whose ``blocks`` are identities: the metamorphic network with every α = 0.

    Exactly so, not approximately: a block's input is a ReLU output (of the stem or the previous block) and a
    metamorphic block has no projection, so ``relu(x + 0 · branch) = x``.
    """
    if prior.batchnorm:
        raise ValueError("the skip network is built from the BatchNorm-folded (smoothed) prior")
    model = copy.deepcopy(prior)
    for s, b in blocks:
        if prior.arch.has_projection(s, b):
            raise ConfigError(f"block {block_name(s, b)} has a projection shortcut: it cannot be skipped")
        container, index = prior.arch.module_prefix(s, b).rsplit(".", 1)
        model.get_submodule(container)[int(index)] = nn.Identity()
    return model.eval()


def skip_params_macs(arch: Architecture, blocks: list[tuple[int, int]], image_size: int) -> tuple[int, int]:
    """Parameters and MACs of :func:`skip_network`. A hidden width of 0 removes every conv's multiply-adds and
    every weight but the last conv's bias, which a removed block does not have either."""
    params, macs = count_params_macs(arch, {position: 0 for position in blocks}, image_size)
    return params - sum(arch.out_width(s) for s, _ in blocks), macs


def fine_tuned_names(config: Config, prior: ResNet) -> list[str]:
    """Names (in ``prior``) of the parameters the metamorphic run fine-tunes, asked of the metamorphic network
    itself (``head_parameters``), so that the skip baseline trains exactly its part; empty when it trains none."""
    net = build_network(config, copy.deepcopy(prior))
    head = {id(p) for p in net.head_parameters()}
    return [name for name, p in net.prior.named_parameters() if id(p) in head]


def metamorphic_epochs(config: Config, block_count: int) -> int:
    """Epochs of the metamorphic run: every stage of its schedule together."""
    train = config.train
    return sum(stage.epochs for stage in plan_stages(train.incremental, train.epochs_per_stage, block_count))


def fit_head(
    model: ResNet,
    names: list[str],
    bundle,
    config: Config,
    *,
    epochs: int,
    device: torch.device,
    on_epoch: Callable[[EpochEnd], object] | None = None,
    label: str | None = None,
    progress=None,
) -> float:
    """Train only the parameters ``names`` as the metamorphic run trains its head group; returns training seconds.

    AdamW at ``train.head_lr`` with ``train.weight_decay``, the run's linear warm-up over
    ``train.warmup_epochs`` (once, from the first step) and gradient values clipped at ``train.clip_value``;
    cross-entropy on shuffled batches of ``data.batch_size``, one step per batch. An epoch reads as many
    batches as one of the metamorphic run: ``train.steps_per_epoch`` × M when that cap is set, else the whole
    training split.
    """
    train = config.train
    parameters = [p for name, p in model.named_parameters() if name in names]
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    if not parameters or epochs == 0:
        return 0.0
    optimizer = torch.optim.AdamW(
        [
            {
                "params": parameters,
                "lr": train.head_lr,
                "base_lr": train.head_lr,
                "weight_decay": train.weight_decay,
                "name": "head",
            }
        ]
    )
    most = None if train.steps_per_epoch is None else train.steps_per_epoch * train.configs_per_step
    batches = batches_per_epoch(len(bundle.train), config.data.batch_size, drop_last=True, most=most)
    optimisation = Optimisation(
        optimizer,
        before_step=lambda step: set_warmup(optimizer, step, train.warmup_epochs * batches),
        clip_value=train.clip_value,
    )
    return fit(
        model,
        bundle.train,
        optimisation,
        batch_size=config.data.batch_size,
        seed=config.seed,
        epochs=range(epochs),
        device=device,
        max_batches=batches,
        drop_last=True,
        on_epoch=on_epoch,
        label=label,
        progress=progress,
    )


def _repeated_rows(model: ResNet, loader, device, gammas: list[float], params: int, macs: int) -> list[dict]:
    """One evaluation of a γ-independent network, as one row per γ."""
    start = time.perf_counter()
    accuracy, loss = accuracy_and_loss(model, loader, device)
    seconds = time.perf_counter() - start
    return [
        {
            "gamma": float(g),
            "samples": 1,
            "accuracy": accuracy,
            "loss": loss,
            "params": params,
            "macs": macs,
            "wall_time_s": seconds,
        }
        for g in gammas
    ]


def run_skip(
    config: Config,
    prior: ResNet,
    bundle,
    gammas: list[float],
    out: Path,
    *,
    run_name: str,
    epochs: int,
    device: torch.device,
    progress: Progress,
) -> list[Path]:
    """The skip baseline: :func:`skip_network` of the smoothed ``prior``, its fine-tuned part trained for
    ``epochs``; one test row per γ of ``gammas`` (the same network at each), written as one table.

    Each epoch is scored on the validation split at the run's monitored γ (rows phase = train, the same
    numbers at each γ); none without a validation split, or when nothing is trained. γ already written with
    the same settings are skipped.
    """
    if epochs < 0:
        raise ConfigError(f"--epochs={epochs} is not allowed: use 0 (no training) or more")
    if prior.arch.num_classes != bundle.info.num_classes or prior.arch.in_channels != bundle.info.in_channels:
        raise ConfigError(
            f"the smoothed prior ({prior.arch.in_channels} input channels, {prior.arch.num_classes} "
            f"classes) does not fit data.name={config.data.name} ({bundle.info.in_channels}, "
            f"{bundle.info.num_classes}): use the run's own config"
        )
    blocks = metamorphic_blocks(config, prior.arch)
    for gamma in gammas:
        target_widths(prior.arch, blocks, gamma)  # the same γ grid rules as the other baselines
    names = fine_tuned_names(config, prior)
    if not names:
        epochs = 0  # train.finetune_head off: the metamorphic run trains no part of the prior either
    settings_hash = short_hash({"config": config.hash(), "baseline": "skip", "epochs": epochs})
    done = finished_baselines(out, settings_hash)
    todo = [g for g in gammas if ("skip", round(float(g), 9)) not in done]
    if not todo:
        progress(f"baseline skip: every γ already in {out}, skipped")
        return []
    seed_everything(config.seed)
    model = skip_network(prior, blocks).to(device)
    params, macs = skip_params_macs(prior.arch, blocks, bundle.info.image_size)
    identity = run_identity(
        config, method="skip", run_id=f"{run_name}/skip", dataset=bundle.info.name, config_hash=settings_hash
    )
    skipped = ", ".join(block_name(*p) for p in blocks)
    trained = f"{', '.join(names)} for {epochs} epoch(s)" if epochs else "nothing (train.finetune_head is off)"
    progress(f"baseline skip: blocks {skipped} removed; training {trained}")
    monitor_loader = None
    if epochs:
        monitor_loader = validation_loader(bundle, config, progress, "baseline skip: no per-epoch accuracy")
    curve = []

    def on_epoch(end: EpochEnd) -> None:
        rows = _repeated_rows(model, monitor_loader, device, monitor_gammas(config), params, macs)
        curve.append(
            result_frame(
                rows, identity, stage=0, epoch=end.epoch, phase="train", split="validation", train_time_s=end.seconds
            )
        )
        progress(f"baseline skip: epoch {end.epoch}/{epochs}  validation acc {rows[0]['accuracy']:.4f}")

    seconds = fit_head(
        model,
        names,
        bundle,
        config,
        epochs=epochs,
        device=device,
        on_epoch=on_epoch if monitor_loader is not None else None,
        label="baseline skip",
        progress=progress,
    )
    test_loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    rows = _repeated_rows(model, test_loader, device, todo, params, macs)
    final = result_frame(rows, identity, stage=0, epoch=epochs, split="test", train_time_s=seconds)
    name = f"skip-{settings_hash}-{short_hash(sorted(float(g) for g in todo))}.parquet"
    path = write_table(pd.concat([*curve, final], ignore_index=True), out, name=name)
    progress(
        f"baseline skip: test accuracy {rows[0]['accuracy']:.4f} at every γ ({params} parameters, {macs} MACs) "
        f"after {seconds:.1f}s → {path}"
    )
    return [path]


# ---- merge and INR-off: the prior base without the INRs' correction ---------------------------------


def switch_off_inr(net) -> None:
    """Zero the output layer of every INR of the metamorphic network ``net``: with ``inr.base = prior`` it then
    generates its prior base alone, the smoothed prior resampled to each width (α and the head as they are)."""
    for bank in net.hyper.banks():
        for index in range(bank.count):
            bank.zero_output(index)


def merge_network(config: Config, prior: ResNet):
    """The smoothed ``prior`` resampled to any γ by the metamorphic network's prior base
    (:meth:`~raymeta.method.metamorphic.MetamorphicNetwork.prior_base`: adjacent channels merged, or copied for
    γ < 0), nothing trained: the metamorphic network of ``config`` with ``inr.base = prior``, its INRs' outputs
    zero and every α = 1. At γ = 0 it is the smoothed prior itself."""
    merged = dataclasses.replace(config, inr=dataclasses.replace(config.inr, base="prior"))
    net = build_network(merged, copy.deepcopy(prior))
    switch_off_inr(net)
    with torch.no_grad():
        net.alphas.fill_(1.0)
    return net.eval()


def _base_rows(net, loader, device, gammas: list[float], config: Config, image_size: int, bundle) -> list[dict]:
    """Test rows of a metamorphic network at ``gammas`` (K = 1: with its INRs off, noise changes nothing),
    calibrated as ``raymeta evaluate`` calibrates when ``eval.calibration`` is set."""
    return evaluate_gammas(
        net,
        loader,
        device,
        gammas,
        samples=1,
        noise=0.0,
        seed=config.seed,
        image_size=image_size,
        calibration=calibration_images(bundle, config.eval.calibration, config.seed),
    )


def run_merge(
    config: Config,
    prior: ResNet,
    bundle,
    gammas: list[float],
    out: Path,
    *,
    run_name: str,
    device: torch.device,
    progress: Progress,
) -> list[Path]:
    """The untrained merge (:func:`merge_network`) at each γ of ``gammas``: rows "merge", training cost 0, as one
    table; γ already written are skipped."""
    blocks = metamorphic_blocks(config, prior.arch)
    for gamma in gammas:
        target_widths(prior.arch, blocks, gamma)
    settings_hash = short_hash({"config": config.hash(), "baseline": "merge"})
    done = finished_baselines(out, settings_hash)
    method = calibrated_method("merge", config)
    todo = [g for g in gammas if (method, round(float(g), 9)) not in done]
    if not todo:
        progress(f"baseline merge: every γ already in {out}, skipped")
        return []
    net = merge_network(config, prior).to(device)
    loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    rows = _base_rows(net, loader, device, todo, config, bundle.info.image_size, bundle)
    for row in rows:  # no α: the plain network's own count
        row["params"], row["macs"] = count_params_macs(
            prior.arch, net.hidden_widths(row["gamma"]), bundle.info.image_size
        )
    identity = run_identity(
        config, method=method, run_id=f"{run_name}/{method}", dataset=bundle.info.name, config_hash=settings_hash
    )
    frame = result_frame(rows, identity, stage=0, epoch=0, split="test", train_time_s=0.0)
    path = write_table(frame, out, name=f"merge-{settings_hash}-{short_hash(sorted(float(g) for g in todo))}.parquet")
    summary = ", ".join(f"γ={row['gamma']:g} {row['accuracy']:.4f}" for row in rows)
    progress(f"baseline merge: the smoothed prior resampled, untrained: {summary} → {path}")
    return [path]


def run_inr_off(
    config: Config, gammas: list[float], out: Path, *, run_name: str, device: torch.device, progress: Progress
) -> list[Path]:
    """The trained metamorphic network of ``config.run_dir`` with its INRs' correction switched off
    (:func:`switch_off_inr`): the merged prior base with the trained α and head, at each γ of ``gammas``; rows
    "<method>-inr-off" (e.g. metamorphic-inr-off) with the run's training cost, as one table."""
    paths = RunPaths(config.run_dir)
    net, trained_config, checkpoint = load_trained(paths.train_checkpoint)
    if trained_config.inr.base != "prior":
        raise ConfigError(
            f"baseline inr-off switches off the INRs' correction of the prior base, and the run of {config.run_dir} "
            f"has inr.base={trained_config.inr.base!r}: its INRs generate the whole block, so switched off every "
            "block would be zero (baseline skip is that network); allowed is a run trained with inr.base=prior"
        )
    if not checkpoint.done:
        progress("baseline inr-off: note — the checkpoint is from an unfinished run")
    method = calibrated_method(f"{method_name(trained_config)}-inr-off", config)
    settings_hash = short_hash(
        {
            "config": trained_config.hash(),
            "baseline": "inr-off",
            "train_time_s": round(checkpoint.train_time_s, 3),
            **({"calibration": config.eval.calibration} if config.eval.calibration else {}),
        }
    )
    done = finished_baselines(out, settings_hash)
    todo = [g for g in gammas if (method, round(float(g), 9)) not in done]
    if not todo:
        progress(f"baseline inr-off: every γ already in {out}, skipped")
        return []
    bundle = load_data(trained_config, augment=False)
    switch_off_inr(net)
    net.to(device)
    loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    rows = _base_rows(net, loader, device, todo, config, bundle.info.image_size, bundle)
    identity = run_identity(
        trained_config,
        method=method,
        run_id=calibrated_method(f"{run_name}/inr-off", config),
        dataset=bundle.info.name,
        config_hash=settings_hash,
    )
    frame = result_frame(
        rows,
        identity,
        stage=checkpoint.state.stage,
        epoch=len(checkpoint.state.history),
        split="test",
        train_time_s=checkpoint.train_time_s,
    )
    path = write_table(frame, out, name=f"inr-off-{settings_hash}-{short_hash(sorted(float(g) for g in todo))}.parquet")
    summary = ", ".join(f"γ={row['gamma']:g} {row['accuracy']:.4f}" for row in rows)
    progress(f"baseline inr-off: the trained run with its INRs' correction off: {summary} → {path}")
    return [path]


# ---- the stage: `raymeta baseline KIND` -----------------------------------------------------------------------

BASELINES = ("individual", "prune", "skip", "slimmable", "merge", "inr-off")


def run_baseline(kind: str, config: Config, progress: Progress, *, out: str | Path | None = None) -> list[Path]:
    """Baseline rows at the γ of ``baseline.gammas`` (default ``eval.gammas``), in the results schema, written to
    ``out`` (default RUN_DIR/results), with the settings of ``config.baseline``."""
    if kind not in BASELINES:
        raise ConfigError(f"baseline {kind!r} is not allowed: use {', '.join(BASELINES)}")
    require_local(config.run_dir, "raymeta baseline's run_dir")
    if out is not None:
        require_local(out, "raymeta baseline's --out")
    settings = config.baseline
    gammas = list(settings.gammas) if settings.gammas is not None else list(config.eval.gammas)
    device = select_device(config)
    paths = RunPaths(config.run_dir)
    out = Path(out or paths.results)
    name = paths.root.name
    if kind == "individual":
        paths.root.mkdir(parents=True, exist_ok=True)
        save_config(config, paths.config)
        bundle = place_training_split(load_data(config), config, device)
        epochs = settings.epochs or config.pretrain.epochs
        progress(f"baseline individual: {len(gammas)} γ values, {epochs} epochs each, on {bundle.info.name}")
        return run_individual(
            config,
            bundle,
            gammas,
            out,
            run_name=name,
            epochs=epochs,
            lr=settings.lr or config.pretrain.lr,
            device=device,
            progress=progress,
        )
    if kind == "skip":
        prior = load_smoothed_prior(config.run_dir)
        bundle = place_training_split(load_data(config), config, device)
        epochs = (
            settings.epochs
            if settings.epochs is not None
            else metamorphic_epochs(config, len(metamorphic_blocks(config, prior.arch)))
        )
        return run_skip(
            config, prior, bundle, gammas, out, run_name=name, epochs=epochs, device=device, progress=progress
        )
    if kind == "merge":
        prior = load_smoothed_prior(config.run_dir, "baseline merge")
        bundle = load_data(config, augment=False)
        return run_merge(config, prior, bundle, gammas, out, run_name=name, device=device, progress=progress)
    if kind == "inr-off":
        return run_inr_off(config, gammas, out, run_name=name, device=device, progress=progress)
    if kind == "slimmable":
        return run_slimmable_baseline(config, gammas, out, run_name=name, device=device, progress=progress)
    importances = check_importances(settings.importance)
    prior = prior_network(PriorCheckpoint.load(paths.prior).require_done(paths.prior))
    budget = None
    if settings.finetune_budget == "equal":
        widths = [g for g in gammas if g >= 0]
        seconds = required_train_seconds(
            config.run_dir, "baseline prune --finetune-budget equal", "fine-tune by epochs (--finetune-epochs N)"
        )
        budget = seconds / max(1, len(widths))
    bundle = place_training_split(load_data(config), config, device)
    tuning = f"fine-tune {settings.finetune_epochs} epoch(s)"
    if budget is not None:
        tuning += f" and {budget:.1f}s each (the metamorphic run's training time over {len(widths)} width(s))"
    progress(f"baseline prune: {', '.join(importances)} importance; γ {', '.join(f'{g:g}' for g in gammas)}; {tuning}")
    return run_pruning(
        config,
        prior,
        bundle,
        gammas,
        importances,
        out,
        run_name=name,
        finetune_epochs=settings.finetune_epochs,
        finetune_lr=settings.finetune_lr,
        gradient_batches=settings.gradient_batches,
        device=device,
        progress=progress,
        finetune_budget_s=budget,
    )
