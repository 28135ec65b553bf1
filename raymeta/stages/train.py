"""Hypernetwork training, read top to bottom: set up → for each stage, start it → for each epoch, its optimiser
steps, monitoring, record and checkpoint.

The method is in :mod:`raymeta.method` (the loss in ``objective``, the configurations of a step in ``sampling``,
the stages, block initialisation and optimiser in ``schedule``); how the ranks of a distributed run share a
step is in :mod:`raymeta.stages.collective`, and monitoring in :mod:`raymeta.stages.monitor`. Both drivers run
:func:`run_training`: the single process through :func:`train`, Ray Train's workers through
:mod:`raymeta.drivers.distributed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from raymeta.config.schema import Config
from raymeta.io.artifacts import EpochRecord, MetamorphicCheckpoint, SmoothedCheckpoint, TrainingState
from raymeta.io.data import DatasetBundle, EpochBatches, epoch_batches
from raymeta.io.files import RunPaths
from raymeta.io.image_folder import FolderEpochBatches
from raymeta.io.progress import Progress, format_duration, throughput
from raymeta.io.tracking import resolve_tracking, tracking
from raymeta.method.adamw import RowAdamW
from raymeta.method.ema import ExponentialAverage, inr_parameters
from raymeta.method.health import block_alphas, loss_balance, reconstruction_errors
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import block_name
from raymeta.method.objective import LOSS_PARTS, Objective
from raymeta.method.sampling import reference_width, sample_configurations
from raymeta.method.schedule import (
    Stage,
    apply_update,
    build_optimizer,
    initialise_new_blocks,
    optimizer_parameters,
    plan_stages,
    prefit_new_blocks,
    restart_new_blocks,
    set_rate,
    trainable_parameters,
    warmup_factor,
)
from raymeta.seeds import derive_seed
from raymeta.stages.collective import (
    Collective,
    accumulate_gradients,
    my_batch_positions,
    my_configurations,
    my_rounds,
    steps_per_epoch,
    synchronise_gradients,
    synchronise_parameters,
)
from raymeta.stages.monitor import (
    epoch_summary,
    evaluate_monitor,
    existing_checkpoint,
    monitor_score,
    save_epoch,
    training_checkpoint,
)
from raymeta.stages.networks import build_network, prior_network
from raymeta.stages.runtime import load_data, place_training_split, seed_everything, select_device, validation_loader

StepHook = Callable[[int, int], None]
"""Called by every rank after every optimiser step with (rank, global step): how tests inject a failure."""

PROGRESS_SECONDS = 30.0
"""Within a long epoch, print a progress line at most this often."""


def objective_of(config: Config) -> Objective:
    """The loss of Eq. 3 as ``config.train`` (and ``inr.coordinate_noise``) weigh it."""
    train = config.train
    return Objective(
        lambda_task=train.lambda_task,
        lambda_distill=train.lambda_distill,
        distill_temperature=train.distill_temperature,
        lambda_feature=train.lambda_feature,
        lambda_rec=train.lambda_rec,
        relative_reconstruction=train.reconstruction == "relative",
        lambda_reg=train.lambda_reg,
        coordinate_noise=config.inr.coordinate_noise,
        precision=train.precision,
    )


@dataclass
class Optimizers:
    """A stage's optimisers. ``inr`` steps once per optimiser step, on the gradients accumulated over the step's
    M configurations (α and the head too, with ``train.head_updates: per_step``); ``head`` (per_configuration)
    steps α and the head once per round of configurations (:func:`raymeta.stages.collective.my_rounds`), without
    warm-up or clipping; None otherwise."""

    inr: RowAdamW
    head: RowAdamW | None = None

    def state_dict(self) -> dict:
        """The checkpoint's ``optimizer``: the INR optimiser's state dict, alone when there is no head optimiser
        (the layout of every checkpoint before ``head_updates``), else both under ``inr`` and ``head``."""
        if self.head is None:
            return self.inr.state_dict()
        return {"inr": self.inr.state_dict(), "head": self.head.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.head is None:
            self.inr.load_state_dict(state)
        else:
            self.inr.load_state_dict(state["inr"])
            self.head.load_state_dict(state["head"])

    def all(self) -> list[RowAdamW]:
        return [self.inr] if self.head is None else [self.inr, self.head]


def build_optimizers(net: MetamorphicNetwork, train) -> Optimizers:
    """The optimisers ``train`` (the config's train group) asks for: one AdamW over every group (per_step), or the
    INRs' and, when the network has α or a fine-tuned head, theirs (per_configuration)."""
    rates = dict(
        lr=train.lr,
        weight_decay=train.weight_decay,
        alpha_lr=train.alpha_lr,
        head_lr=train.head_lr,
        head_weight_decay=train.head_weight_decay,
    )
    if train.head_updates == "per_step":
        return Optimizers(build_optimizer(net, **rates))
    groups = net.parameter_groups()
    head = build_optimizer(net, groups=("alpha", "head"), **rates) if groups["alpha"] or groups["head"] else None
    return Optimizers(build_optimizer(net, groups=("inr",), **rates), head)


@dataclass
class Setup:
    """What a run builds once and every stage uses: the network, its distillation teacher (the smoothed prior,
    frozen; None without distillation), the EMA of its INRs (None when off), the data and the stage plan."""

    config: Config
    collective: Collective
    device: torch.device
    bundle: DatasetBundle
    net: MetamorphicNetwork
    teacher: torch.nn.Module | None
    ema: ExponentialAverage | None
    objective: Objective
    stages: list[Stage]
    steps_per_epoch: int
    monitor_loader: object  # a DataLoader over the validation split, or None when there is none


def set_up(config: Config, collective: Collective, progress: Progress) -> Setup:
    """Build the run (on every rank the same), refusing what cannot work before any step."""
    seed_everything(config.seed)
    device, train = select_device(config), config.train
    smoothed = SmoothedCheckpoint.load(RunPaths(config.run_dir).smoothed)
    bundle = place_training_split(load_data(config), config, device)
    net = build_network(config, prior_network(smoothed)).to(device)
    teacher = net.layout_teacher(prior_network(smoothed).to(device)) if train.lambda_distill > 0 else None
    ema = ExponentialAverage(inr_parameters(net), train.ema_decay) if train.ema_decay > 0 else None
    stages = plan_stages(train.incremental, train.epochs_per_stage, len(net.blocks))
    steps = steps_per_epoch(
        len(bundle.train), config.data.batch_size, train.configs_per_step, train.steps_per_epoch, collective.world_size
    )
    # Monitoring (and so a sweep's score) sees the validation split only; without one there is none.
    monitor = validation_loader(bundle, config, progress, "train: no per-epoch monitoring (no monitor rows, score NaN)")
    workers = f", {collective.world_size} workers" if collective.world_size > 1 else ""
    progress(
        f"train: {len(stages)} stage(s) over blocks {', '.join(block_name(*p) for p in net.blocks)}; "
        f"M={train.configs_per_step}{workers}, {steps} steps/epoch, switches {train.switches}"
    )
    if train.precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        progress(
            "train: warning: train.precision=bf16 on a CPU without bf16 matrix units (AVX512-BF16 or AMX): "
            "emulated, several times slower than fp32 here (benchmarks/RESULTS.md)"
        )
    return Setup(config, collective, device, bundle, net, teacher, ema, objective_of(config), stages, steps, monitor)


def restore(setup: Setup, checkpoint: MetamorphicCheckpoint, progress: Progress) -> dict | None:
    """Load ``checkpoint``'s network, EMA and torch RNG into the run; returns its optimiser state."""
    setup.net.set_active_blocks(checkpoint.active_blocks)
    setup.net.load_state_dict(checkpoint.net_state)
    if setup.ema is not None:
        setup.ema.load_state_dict(checkpoint.ema)
    torch.set_rng_state(checkpoint.rng)
    state = checkpoint.state
    if state.stage >= len(setup.stages):
        progress(f"train: already finished ({state.step} steps)")
    else:
        progress(f"train: resuming at stage {state.stage + 1}, epoch {state.epoch}, step {state.step}")
    return checkpoint.optimizer


def start_stage(
    setup: Setup,
    stage: Stage,
    state: TrainingState,
    optimizers: Optimizers | None,
    optimizer_state: dict | None,
    progress: Progress,
) -> Optimizers:
    """Activate the stage's blocks; at its first epoch initialise (and warm-start) the new ones; returns the
    stage's optimisers (``optimizer_state``, from a checkpoint, loaded into them where it applies)."""
    config, net, train = setup.config, setup.net, setup.config.train
    net.set_active_blocks(stage.active_blocks)
    previous = setup.stages[stage.index - 1].active_blocks if stage.index > 0 else 0
    if state.epoch == 0:
        initialise_new_blocks(
            net,
            previous,
            stage.active_blocks,
            seed=config.seed,
            stage=stage.index,
            alpha_init=train.alpha_init,
            inr_init=train.inr_init,
        )
        fitted = prefit_new_blocks(
            net,
            previous,
            stage.active_blocks,
            seed=config.seed,
            stage=stage.index,
            steps=train.prefit_steps,
            lr=train.prefit_lr,
            coordinate_noise=config.inr.coordinate_noise,
        )
        if fitted:
            progress(
                f"train: stage {stage.index + 1}/{len(setup.stages)} warm start, {train.prefit_steps} steps: "
                f"relative error of the new tensors at γ=0 {' '.join(f'{e:.3f}' for e in fitted.values())}"
            )
    synchronise_parameters(net, setup.collective)
    if setup.ema is not None and state.epoch == 0:
        setup.ema.restart()  # new INRs joined: average from here
    if optimizers is None or train.warmup != "once":
        # per_stage, first_stage: fresh optimisers (moments, step counts) every stage. once: the same for the whole
        # run, so the blocks already trained go on at the rate they had (a fresh Adam at full rate throws them off).
        optimizers = build_optimizers(net, train)
        if optimizer_state is not None and (train.warmup == "once" or state.epoch > 0):
            optimizers.load_state_dict(optimizer_state)
    if train.warmup == "once" and state.epoch == 0:
        for optimizer in optimizers.all():  # the new blocks' rows start their own Adam state
            restart_new_blocks(net, optimizer, previous, stage.active_blocks)
    return optimizers


def train_epoch(
    setup: Setup,
    optimizers: Optimizers,
    batches: EpochBatches | FolderEpochBatches,
    state: TrainingState,
    report: Progress,
    step_hook: StepHook | None = None,
) -> torch.Tensor:
    """One epoch of optimiser steps, each over M configurations on M micro-batches; returns every loss part
    (:data:`~raymeta.method.objective.LOSS_PARTS`) of every step, the mean over its configurations: [steps, parts].

    Configuration k of step s uses batch s·M + k of ``batches``. Each rank runs only its own configurations;
    the gradients are summed over ranks before the (identical) update on every rank, and the loss parts once
    at the end. With a head optimiser (``head_updates: per_configuration``) the step runs in rounds, one
    configuration per rank each, and α and the head step after every round on its summed gradients; the INRs'
    gradients accumulate over the rounds. ``state.step`` advances; the EMA is updated after every step, then
    ``step_hook(rank, step)``.
    """
    config, net, collective, steps = setup.config, setup.net, setup.collective, setup.steps_per_epoch
    M, train = config.train.configs_per_step, config.train
    width = reference_width(net)
    parameters = trainable_parameters(net) if optimizers.head is None else optimizer_parameters(optimizers.inr)
    head_parameters = [] if optimizers.head is None else optimizer_parameters(optimizers.head)
    losses = torch.zeros(steps, len(LOSS_PARTS), dtype=torch.float64)
    net.train()
    start = last_report = time.perf_counter()
    # This rank's micro-batches of the whole epoch, in the order the steps use them (decoded ahead when streamed).
    stream = batches.read(my_batch_positions(steps, M, collective.rank, collective.world_size))
    for step_in_epoch in range(steps):
        factor = warmup_factor(
            train.warmup,
            stage=state.stage,
            global_step=state.step,
            epoch_in_stage=state.epoch,
            step_in_epoch=step_in_epoch,
            steps=steps,
            warmup_epochs=train.warmup_epochs,
        )
        set_rate(optimizers.inr, factor)
        gammas = sample_configurations(
            config.seed, state.step, M, train.gamma_pool, width, train.gamma_sampling, len(net.blocks), train.sandwich
        )
        mine = my_configurations(gammas, collective.rank, collective.world_size)
        micro_batches = [next(stream) for _ in mine]  # batch step·M + k for each configuration k of mine
        work = partial(
            accumulate_gradients,
            net,
            state.step,
            total_configs=M,
            objective=setup.objective,
            seed=config.seed,
            device=setup.device,
            teacher=setup.teacher,
        )
        if optimizers.head is None:
            parts = work(mine, micro_batches)
        else:
            parts = {}
            for positions in my_rounds(mine, M, collective.round_size, collective.world_size):
                for key, value in work([mine[i] for i in positions], [micro_batches[i] for i in positions]).items():
                    parts[key] = parts.get(key, 0.0) + value
                synchronise_gradients(head_parameters, collective)
                optimizers.head.step()  # α and the head: their own rate, no warm-up, no clipping
                optimizers.head.zero_grad(set_to_none=True)
        synchronise_gradients(parameters, collective)
        apply_update(net, optimizers.inr, train.clip_value, parameters)
        if setup.ema is not None:
            setup.ema.update()
        losses[step_in_epoch] = torch.tensor([parts.get(key, 0.0) for key in LOSS_PARTS], dtype=torch.float64) / M
        state.step += 1
        if step_hook is not None:
            step_hook(collective.rank, state.step)
        if time.perf_counter() - last_report > PROGRESS_SECONDS and step_in_epoch + 1 < steps:
            last_report, done = time.perf_counter(), step_in_epoch + 1
            seconds = last_report - start
            report(
                f"step {done}/{steps}  loss (rank {collective.rank}) "
                f"{losses[:done, 0].mean().item() * collective.world_size:.4f}  "
                f"[{throughput(done, done * M * config.data.batch_size, seconds)}, "
                f"epoch ETA {format_duration((steps - done) * seconds / done)}]"
            )
    return collective.all_reduce_sum(losses)


def run_epoch(
    setup: Setup,
    optimizers: Optimizers,
    stage: Stage,
    state: TrainingState,
    progress: Progress,
    step_hook: StepHook | None,
) -> EpochRecord:
    """Train one epoch, monitor the evaluated weights, append the epoch's record and advance ``state``."""
    config, net = setup.config, setup.net
    start = time.perf_counter()
    batches = epoch_batches(
        setup.bundle.train,
        config.data.batch_size,
        seed=derive_seed(config.seed, "batches", stage.index),
        epoch=state.epoch,
    )
    label = f"train: stage {stage.index + 1}/{len(setup.stages)} epoch {state.epoch + 1}/{stage.epochs}"
    losses = train_epoch(setup, optimizers, batches, state, lambda text: progress(f"{label} {text}"), step_hook)
    with setup.ema.applied() if setup.ema is not None else nullcontext():  # the signals of the evaluated weights
        rows = evaluate_monitor(
            net, setup.monitor_loader, setup.device, config, setup.bundle.info.image_size, setup.collective
        )
        alphas, rec_errors = block_alphas(net), reconstruction_errors(net)
        balance = loss_balance(net, setup.objective, config.train.configs_per_step)
    state.epoch += 1
    record = EpochRecord(
        stage=stage.index,
        epoch=state.epoch,
        global_epoch=len(state.history) + 1,
        step=state.step,
        seconds=time.perf_counter() - start,
        finished=time.time(),
        losses=dict(zip(LOSS_PARTS, losses.mean(0).tolist(), strict=True)),
        step_losses=dict(zip(LOSS_PARTS, losses.T.tolist(), strict=True)),
        monitor=rows,
        score=monitor_score(rows, config),
        alphas=alphas,
        rec_errors=rec_errors,
        balance=balance.ratio,
        balance_at_zero=balance.at_zero,
    )
    state.history.append(record)
    if state.epoch >= stage.epochs:
        state.stage, state.epoch = state.stage + 1, 0
    return record


def epochs_left(stages: list[Stage], state: TrainingState) -> int:
    """The epochs the run has still to train, from ``state`` (after a finished epoch) to the end of the plan."""
    return sum(stage.epochs for stage in stages[state.stage :]) - state.epoch


def run_training(
    config: Config,
    *,
    resume_from: MetamorphicCheckpoint | None,
    on_epoch_end,
    progress: Progress,
    collective: Collective | None = None,
    stop_after_epochs: int | None = None,
    step_hook: StepHook | None = None,
) -> TrainingState:
    """The stage schedule of one run, shared by both drivers; returns the final training state.

    ``resume_from`` is a checkpoint to continue from (or None). After every epoch, every rank calls
    ``on_epoch_end(make_checkpoint, record)``, where ``make_checkpoint()`` builds the checkpoint: the
    driver decides who writes it (the single process always; rank 0 in a distributed run).
    """
    setup = set_up(config, collective or Collective(), progress)
    state, optimizer_state = TrainingState(), None
    if resume_from is not None:
        state, optimizer_state = resume_from.state, restore(setup, resume_from, progress)
    optimizers, epochs_run = None, 0
    while state.stage < len(setup.stages):
        stage = setup.stages[state.stage]
        optimizers = start_stage(setup, stage, state, optimizers, optimizer_state, progress)
        optimizer_state = None
        while state.stage == stage.index:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                progress(f"train: stopping after {epochs_run} epoch(s) as asked; resume to continue")
                return state
            record = run_epoch(setup, optimizers, stage, state, progress, step_hook)
            epochs_run += 1
            on_epoch_end(
                partial(
                    training_checkpoint,
                    config,
                    setup.net,
                    setup.bundle.info,
                    state,
                    optimizers,
                    setup.ema,
                    len(setup.stages),
                ),
                record,
            )
            progress(
                epoch_summary(
                    record,
                    stage,
                    len(setup.stages),
                    steps=setup.steps_per_epoch,
                    images=setup.steps_per_epoch * config.train.configs_per_step * config.data.batch_size,
                    epochs_left=epochs_left(setup.stages, state),
                )
            )
    progress(f"train: done, {state.step} steps")
    return state


def train(
    config: Config,
    *,
    resume: bool | None = None,
    stop_after_epochs: int | None = None,
    progress: Progress | None = None,
    step_hook: StepHook | None = None,
    collective: Collective | None = None,
) -> Path:
    """The single-process driver: train stage by stage, checkpoint every epoch. Returns the checkpoint path.

    ``resume``: None continues an existing checkpoint of the same configuration, True requires one,
    False starts afresh. ``stop_after_epochs`` ends this call after that many epochs (resumable).
    ``collective``: ``Collective(round_size=N)`` computes what N workers compute (a check of the step's layout).
    """
    progress = progress or Progress()
    paths = RunPaths(config.run_dir)
    config = resolve_tracking(config)
    checkpoint = existing_checkpoint(config, resume)
    if checkpoint is not None:
        progress(f"train: resuming from {paths.train_checkpoint}")
    with tracking(config) as tracker:

        def on_epoch_end(make_checkpoint, record: EpochRecord) -> None:
            save_epoch(config, make_checkpoint())
            tracker.log_epoch(record)

        run_training(
            config,
            resume_from=checkpoint,
            progress=progress,
            stop_after_epochs=stop_after_epochs,
            step_hook=step_hook,
            on_epoch_end=on_epoch_end,
            collective=collective,
        )
        tracker.log_files([paths.results / "train-monitor.parquet"], "results")
    progress(f"train: checkpoint {paths.train_checkpoint}")
    return paths.train_checkpoint
