"""Hypernetwork training: the loss, one optimiser step over M configurations, the stage schedule.

The pieces are split so that a distributed driver can reuse them unchanged: :func:`sample_gammas` is a
pure function of (seed, step), :func:`accumulate_gradients` runs any subset of a step's configurations
(each scaled by 1/M, so subsets summed over workers equal the whole), and :func:`apply_update` clips
and steps once the gradients are complete.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raymeta.config.schema import Config
from raymeta.errors import CheckpointError, ConfigError
from raymeta.io.artifacts import MetamorphicCheckpoint, SmoothedCheckpoint, TrainingState
from raymeta.io.data import EpochBatches
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.io.results import result_frame, write_table
from raymeta.method.ema import ExponentialAverage, inr_parameters
from raymeta.method.health import block_alphas, health_columns, reconstruction_errors, worst_by_block
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import block_name, hidden_width
from raymeta.method.widths import Gamma
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.identity import run_identity
from raymeta.stages.networks import build_network, prior_network
from raymeta.stages.runtime import load_data, place_training_split, seed_everything, select_device, validation_loader

StepHook = Callable[[int, int], None]
"""Called by every rank after every optimiser step with (rank, global step): how tests inject a failure."""


PROGRESS_SECONDS = 30.0
"""Within a long epoch, print a progress line at most this often."""


@dataclass(frozen=True)
class Stage:
    index: int
    active_blocks: int
    epochs: int


def plan_stages(config: Config, block_count: int) -> list[Stage]:
    """Incremental: one more block per stage. Otherwise one stage with as many epochs in total (paper §4.1)."""
    epochs = config.train.epochs_per_stage
    if config.train.incremental:
        return [Stage(i, i + 1, epochs) for i in range(block_count)]
    return [Stage(0, block_count, epochs * block_count)]


def pool_widths(pool: list[float], reference_width: int) -> list[int]:
    """The hidden widths of a block of width ``reference_width`` whose γ lies inside the training pool.

    A pool narrower than one channel step holds no whole width: then the width nearest its low end.
    """
    low, high = pool
    narrowest = math.ceil((1 - high) * reference_width - 1e-9)
    widest = math.floor((1 - low) * reference_width + 1e-9)
    if narrowest > widest:
        return [hidden_width(reference_width, low)]
    return list(range(max(1, narrowest), widest + 1))


def sample_gammas(seed: int, step: int, count: int, pool: list[float], reference_width: int) -> list[float]:
    """The M compression ratios of optimiser step ``step``: γ = 0 first (when M ≥ 2), the rest drawn from the pool.

    Each drawn configuration is a hidden width h, a uniform integer over :func:`pool_widths` of the widest
    metamorphic block (C = ``reference_width``), and γ = 1 − h/C, as NeuMeta's code draws
    ``random.choice(dimensions)``. So γ = 0, the one configuration with a reconstruction term, comes up in
    1/(number of widths) of the draws even with M = 1; a continuous uniform γ would almost never be 0.
    A pure function of (seed, step), so every worker of a distributed run draws the same list.
    """
    rng = np.random.default_rng([seed, step])
    widths = pool_widths(pool, reference_width)
    gammas = [1.0 - widths[int(i)] / reference_width for i in rng.integers(0, len(widths), size=count)]
    if count >= 2:
        gammas[0] = 0.0
    return gammas


def sample_configurations(seed: int, step: int, count: int, pool: list[float], reference_width: int,
                          sampling: str = "uniform", blocks: int = 1) -> list[Gamma]:
    """The M configurations of optimiser step ``step``: :func:`sample_gammas` (uniform γ) or, with ``sampling`` =
    per_block, one γ per metamorphic block (``blocks`` of them), each drawn independently on the same grid of
    widths, with every block at γ = 0 first (when M ≥ 2). A pure function of (seed, step) either way."""
    if sampling == "uniform":
        return sample_gammas(seed, step, count, pool, reference_width)
    if sampling != "per_block":
        raise ConfigError(f"train.gamma_sampling={sampling!r} is not allowed: uniform or per_block")
    rng = np.random.default_rng([seed, step, blocks])
    widths = pool_widths(pool, reference_width)
    draws = rng.integers(0, len(widths), size=(count, blocks))
    configurations: list[Gamma] = [tuple(1.0 - widths[int(i)] / reference_width for i in row) for row in draws]
    if count >= 2:
        configurations[0] = (0.0,) * blocks
    return configurations


def reference_width(net: MetamorphicNetwork) -> int:
    """The width of the widest metamorphic block: its hidden widths are the grid γ is drawn on."""
    return max(net.arch.widths[s] for s, _ in net.blocks)


def noise_generator(seed: int, step: int, config_index: int) -> torch.Generator:
    """Coordinate noise of one configuration of one step, independent of which worker runs it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + config_index)


def configuration_loss(net: MetamorphicNetwork, gamma: Gamma, images: torch.Tensor, labels: torch.Tensor,
                       config: Config, generator: torch.Generator | None, *, share: float = 1.0,
                       weight_terms: bool = True, teacher_logits: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """``λ_task·CE + λ_distill·T²·KL(p_prior ‖ p) + λ_rec·rec(W_gen, W_prior) + λ_reg·Σ‖W_gen‖₂``; the
    reconstruction term only at the prior's own shape, the distillation term when ``teacher_logits`` (the
    prior's logits on these images) are given.

    For a slice of a configuration's micro-batch, ``share`` is the slice's fraction of the batch (it scales
    the mean cross-entropy) and ``weight_terms`` says whether this slice carries the batch-independent
    terms (exactly one slice of each configuration does), so the slices sum to the whole-batch loss.
    """
    train = config.train
    features = [] if train.lambda_feature > 0 else None
    with autocast(config, images.device):
        weights = net.generate(gamma, noise=config.inr.coordinate_noise, generator=generator)
        logits = net(images, weights, features)
    # The loss terms in fp32 whatever the step's precision (a no-op in fp32).
    logits = logits.float()
    weights = {name: value.float() for name, value in weights.items()}
    features = [(branch.float(), target.float()) for branch, target in features] if features else features
    task = F.cross_entropy(logits, labels) * share
    total = train.lambda_task * task
    parts = {"task": task.item(), "reg": 0.0, "rec": 0.0, "distill": 0.0, "feature": 0.0,
             "correct": (logits.argmax(1) == labels).float().mean().item() * share}
    if features:
        feature = torch.stack([relative_mse(branch, target) for branch, target in features]).mean() * share
        total = total + train.lambda_feature * feature
        parts["feature"] = feature.item()
    if teacher_logits is not None and train.lambda_distill > 0:
        distill = distillation_loss(logits, teacher_logits, train.distill_temperature) * share
        total = total + train.lambda_distill * distill
        parts["distill"] = distill.item()
    if not weight_terms:
        parts["loss"] = total.item()
        return total, parts
    regulariser = torch.stack([w.norm() for w in weights.values()]).sum()
    total = total + train.lambda_reg * regulariser
    parts["reg"] = regulariser.item()
    if net.is_full_width(gamma) and train.lambda_rec > 0:
        reconstruction = reconstruction_error(weights, net.prior_tensors(), relative=train.reconstruction == "relative")
        total = total + train.lambda_rec * reconstruction
        parts["rec"] = reconstruction.item()
    parts["loss"] = total.item()
    return total, parts


def autocast(config: Config, device: torch.device) -> torch.autocast:
    """The step's arithmetic (``train.precision``): bf16 autocast of weight generation and the generated network
    (matrix products and convolutions in bfloat16, parameters and their gradients in fp32), or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.train.precision == "bf16")


def reconstruction_error(generated: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], *,
                         relative: bool = False) -> torch.Tensor:
    """The mean over tensors of each tensor's MSE to its target, as NeuMeta's code computes it: a bias weighs
    as much as a kernel. (One MSE over all elements together would leave the biases, well under 1 % of the
    elements, all but unsupervised.) ``relative`` divides each tensor's MSE by its target's mean square: the
    squared relative RMS error, 1 for generating zeros whatever the tensor's scale."""
    measure = relative_mse if relative else F.mse_loss
    errors = [measure(generated[name], target.to(generated[name].device)) for name, target in targets.items()]
    return torch.stack(errors).mean()


def relative_mse(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over the target's mean square: the squared relative RMS error (1 for zeros, whatever the scale)."""
    return F.mse_loss(value, target) / target.pow(2).mean().clamp_min(1e-12)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T²·KL(softmax(teacher/T) ‖ softmax(logits/T))``, the batch mean (Hinton et al.'s scaling)."""
    log_student = F.log_softmax(logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature ** 2


@dataclass(frozen=True)
class WorkUnit:
    """One configuration of a step (index, γ), or one of ``slices`` equal parts of its micro-batch."""

    index: int
    gamma: Gamma
    slice: int = 0
    slices: int = 1

    def rows(self, batch_size: int) -> slice:
        return slice(self.slice * batch_size // self.slices, (self.slice + 1) * batch_size // self.slices)


def accumulate_gradients(net: MetamorphicNetwork, step: int, units: list[WorkUnit],
                         batches: list[tuple[torch.Tensor, torch.Tensor]], total_configs: int, config: Config,
                         device: torch.device, teacher: torch.nn.Module | None = None) -> dict[str, float]:
    """Backward each unit on its micro-batch (or its slice of it), scaled by 1/M; sum of loss parts.

    A unit is a whole configuration or a slice of one; ``batches`` holds each unit's whole micro-batch.
    ``teacher`` (the frozen prior) gives the distillation targets.
    """
    sums: dict[str, float] = {}
    for unit, (images, labels) in zip(units, batches, strict=True):
        whole = len(labels)
        rows = unit.rows(whole)
        images, labels = images[rows], labels[rows]
        share = len(labels) / whole
        generator = noise_generator(config.seed, step, unit.index)
        images, labels = images.to(device), labels.to(device)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad(), autocast(config, device):
                teacher_logits = teacher(images).float()
        loss, parts = configuration_loss(net, unit.gamma, images, labels, config, generator,
                                         share=share, weight_terms=unit.slice == 0, teacher_logits=teacher_logits)
        (loss / total_configs).backward()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return sums


def trainable_parameters(net: MetamorphicNetwork) -> list[torch.nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


def apply_update(net: MetamorphicNetwork, optimizer: torch.optim.Optimizer, clip_value: float) -> None:
    if clip_value > 0:
        torch.nn.utils.clip_grad_value_(trainable_parameters(net), clip_value)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_optimizer(net: MetamorphicNetwork, config: Config) -> torch.optim.AdamW:
    train = config.train
    groups = net.parameter_groups()
    settings = {"inr": (train.lr, train.weight_decay), "alpha": (train.alpha_lr, 0.0),
                "head": (train.head_lr, train.weight_decay)}
    param_groups = [{"params": groups[name], "lr": lr, "base_lr": lr, "weight_decay": wd, "name": name}
                    for name, (lr, wd) in settings.items() if groups[name]]
    return torch.optim.AdamW(param_groups)


def warmup_position(mode: str, global_step: int, epoch_in_stage: int, step_in_epoch: int, steps: int) -> int:
    """Steps into the warm-up: since the run began (``once``) or since the stage began (``per_stage``)."""
    if mode == "once":
        return global_step
    return epoch_in_stage * steps + step_in_epoch


def set_warmup(optimizer: torch.optim.Optimizer, position: int, warmup_steps: float) -> float:
    """Linear warm-up from ~0 to every group's base rate, then constant; returns the factor."""
    factor = 1.0 if warmup_steps <= 0 else min(1.0, (position + 1) / warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return factor


@torch.no_grad()
def initialise_new_blocks(net: MetamorphicNetwork, first: int, last: int, config: Config, stage: int) -> None:
    """INRs of the new blocks first..last-1 (blocks 0..first-1 were trained in earlier stages).

    With inr_init, a block whose predecessor has been trained starts as a copy of the predecessor's INRs
    (HTTY §3.3: "the final weights of its predecessor"); every other new block starts at random, so a
    non-incremental run (all blocks new in one stage) never copies an untrained INR into its neighbours.
    """
    generator = torch.Generator().manual_seed(config.seed * 7919 + stage)
    for block in range(first, last):
        if net.alpha_scaling:
            net.alphas[block] = config.train.alpha_init
        predecessor_trained = 0 < block <= first
        for offset in (0, 1):  # conv1 and conv2 of the block
            target = 2 * block + offset
            for bank in net.hyper.banks():
                if config.train.inr_init and predecessor_trained:
                    bank.copy_mlp(2 * (block - 1) + offset, target)
                else:
                    bank.reset_mlp(target, generator)
                if net.base == "prior":  # a correction of the prior's weights: starts at zero
                    bank.zero_output(target)


def prefit_new_blocks(net: MetamorphicNetwork, first: int, last: int, config: Config, stage: int) -> dict[str, float]:
    """Warm start: fit the INRs of the new blocks first..last-1 to the prior's tensors by the relative
    reconstruction error alone (``train.prefit_steps`` Adam steps, cosine-decayed from ``train.prefit_lr``), at
    γ = 0 with the training coordinate noise; returns each fitted tensor's relative RMS error afterwards.

    Only the new blocks' MLPs move: the loss does not see the other MLPs, whose gradient slices stay zero,
    and Adam (no weight decay) leaves a parameter with zero moments unchanged. Deterministic, so every rank
    of a distributed run fits the same INRs.
    """
    steps = config.train.prefit_steps
    if steps <= 0 or last <= first:
        return {}
    prefixes = tuple(f"{net.hyper.layers[2 * block + offset].module}." for block in range(first, last)
                     for offset in (0, 1))
    targets = {name: t for name, t in net.prior_tensors().items() if name.startswith(prefixes)}
    parameters = list(net.hyper.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.train.prefit_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(config.seed * 104_729 + stage)
    with torch.enable_grad():
        for _ in range(steps):
            weights = net.generate(0.0, noise=config.inr.coordinate_noise, generator=generator)
            loss = reconstruction_error({name: weights[name] for name in targets}, targets, relative=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    errors = reconstruction_errors(net)
    return {name: errors[name] for name in targets}


def monitor_gammas(config: Config) -> list[float]:
    if config.train.monitor_gammas is not None:
        return sorted(set(config.train.monitor_gammas))
    low, high = config.train.gamma_pool
    return sorted({low, high})


def monitor_score(rows: list[dict], config: Config) -> float:
    """Mean accuracy over the monitored γ values inside the training pool (NaN when none is inside)."""
    low, high = config.train.gamma_pool
    seen = [row["accuracy"] for row in rows if low - 1e-9 <= row["gamma"] <= high + 1e-9]
    return sum(seen) / len(seen) if seen else float("nan")


class Collective:
    """How the ranks of a run combine their work. The single process is rank 0 of 1: nothing to combine.

    The distributed driver substitutes :class:`raymeta.drivers.distributed.TorchCollective`; everything else in
    a training step is the same code for both drivers.
    """

    rank = 0
    world_size = 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_gather_object(self, value) -> list:
        return [value]


def my_configurations(gammas: list[float], rank: int, world_size: int) -> list[WorkUnit]:
    """The work of rank ``rank`` of ``world_size`` in one step of M = len(gammas) configurations.

    With N ≤ M workers, rank r runs whole configurations r, r+N, …. With N > M, each configuration's
    micro-batch is cut into S = ⌈N/M⌉ equal slices and the M·S units (configuration-major) are dealt out the
    same way; a slice's loss is weighted by its share of the batch, so the units always sum to the whole step.
    """
    slices = -(-world_size // len(gammas))
    units = [WorkUnit(index, gammas[index], part, slices) for index in range(len(gammas)) for part in range(slices)]
    return units[rank::world_size]


def synchronise_gradients(parameters: list[torch.nn.Parameter], collective: Collective) -> None:
    """Sum every rank's gradients (one all-reduce of one flat vector).

    A parameter no rank touched keeps ``grad = None`` (as in one process, where AdamW then skips it); one
    that some rank touched gets the sum, with zeros from the ranks that did not.
    """
    if collective.world_size == 1:
        return
    flat = [p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), device=p.device, dtype=p.dtype)
            for p in parameters]
    touched = torch.tensor([p.grad is not None for p in parameters], dtype=flat[0].dtype, device=flat[0].device)
    vector = collective.all_reduce_sum(torch.cat([*flat, touched]))
    touched = vector[-len(parameters):]
    offset = 0
    for parameter, was_touched in zip(parameters, touched.tolist(), strict=True):
        count = parameter.numel()
        parameter.grad = vector[offset:offset + count].view_as(parameter).clone() if was_touched else None
        offset += count


def synchronise_parameters(net: MetamorphicNetwork, collective: Collective) -> None:
    """Every rank starts from rank 0's weights (all of them, trainable or not)."""
    if collective.world_size == 1:
        return
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            tensor.copy_(collective.broadcast(tensor.detach().clone()))


def train_epoch(net: MetamorphicNetwork, optimizer: torch.optim.Optimizer, batches, state: TrainingState,
                steps: int, warmup_steps: float, config: Config, device: torch.device, report,
                collective: Collective | None = None, step_hook: StepHook | None = None,
                ema: ExponentialAverage | None = None, teacher: torch.nn.Module | None = None) -> dict[str, float]:
    """``steps`` optimiser steps, each over M configurations on M micro-batches; mean loss parts per step.

    ``batches`` is the epoch's :class:`~raymeta.io.data.EpochBatches`: configuration k of step s uses batch
    s·M + k. Each rank reads and runs only its own configurations; the gradients are summed over ranks
    before the (identical) update on every rank. ``state.step`` (the global step) advances; ``state.epoch``
    places the epoch in its stage (for a per-stage warm-up). ``ema`` is updated after every step, then
    ``step_hook(rank, step)`` is called.
    """
    collective = collective or Collective()
    M = config.train.configs_per_step
    parameters = trainable_parameters(net)
    keys = ("loss", "task", "distill", "feature", "rec", "reg", "correct")
    net.train()
    sums = torch.zeros(len(keys), dtype=torch.float64)
    last_report = time.perf_counter()
    width = reference_width(net)
    for step_in_epoch in range(steps):
        position = warmup_position(config.train.warmup, state.step, state.epoch, step_in_epoch, steps)
        set_warmup(optimizer, position, warmup_steps)
        gammas = sample_configurations(config.seed, state.step, M, config.train.gamma_pool, width,
                                       config.train.gamma_sampling, len(net.blocks))
        mine = my_configurations(gammas, collective.rank, collective.world_size)
        micro_batches = [batches[step_in_epoch * M + unit.index] for unit in mine]
        parts = accumulate_gradients(net, state.step, mine, micro_batches, M, config, device, teacher)
        synchronise_gradients(parameters, collective)
        apply_update(net, optimizer, config.train.clip_value)
        if ema is not None:
            ema.update()
        sums += torch.tensor([parts.get(key, 0.0) for key in keys], dtype=torch.float64) / M
        state.step += 1
        if step_hook is not None:
            step_hook(collective.rank, state.step)
        if time.perf_counter() - last_report > PROGRESS_SECONDS and step_in_epoch + 1 < steps:
            last_report = time.perf_counter()
            report(f"step {step_in_epoch + 1}/{steps}  loss (rank {collective.rank}) "
                   f"{sums[0].item() * collective.world_size / (step_in_epoch + 1):.4f}")
    sums = collective.all_reduce_sum(sums)
    return {key: value / steps for key, value in zip(keys, sums.tolist(), strict=True)}


def evaluate_monitor(net: MetamorphicNetwork, loader, device, config: Config, image_size: int,
                     collective: Collective) -> list[dict]:
    """Accuracy at the monitored γ values (K = 1) on ``loader`` (the validation split), the γ values shared
    out over the ranks. No loader (no validation split): no rows."""
    if loader is None:
        return []
    net.eval()
    gammas = monitor_gammas(config)
    rows = evaluate_gammas(net, loader, device, gammas[collective.rank::collective.world_size], samples=1,
                           noise=0.0, seed=config.seed, image_size=image_size)
    gathered = [row for part in collective.all_gather_object(rows) for row in part]
    return sorted(gathered, key=lambda row: row["gamma"])


def existing_checkpoint(config: Config, resume: bool | None) -> MetamorphicCheckpoint | None:
    """The run's training checkpoint to continue from, per ``resume`` (None: if there is one; True: required;
    False: never). A checkpoint of another configuration is an error."""
    path = RunPaths(config.run_dir).train_checkpoint
    if resume and not path.is_file():
        raise CheckpointError(f"--resume: no training checkpoint at {path}")
    if resume is False or not path.is_file():
        return None
    return MetamorphicCheckpoint.load(path, expect_hash=config.hash())


def write_monitor_table(config: Config, state: TrainingState, dataset: str) -> Path | None:
    """The per-epoch monitor rows of the whole run so far, rewritten atomically as one Parquet file.

    Each row carries its epoch's health signals as ``alpha.<block>`` and ``rec.<tensor>`` columns (the same on
    every γ row of the epoch; NaN for a block not yet active, or for a record from before the signals)."""
    import pandas as pd

    rows, placement, health, elapsed = [], [], [], 0.0
    for record in state.history:
        elapsed += record["seconds"]
        for row in record.get("monitor", []):
            rows.append(row)
            placement.append((record["stage"], record["global_epoch"], elapsed))
            health.append(health_columns(record.get("alphas", {}), record.get("rec_errors", {})))
    if not rows:  # no validation split (or a checkpoint from before monitor rows): no table, not a stale one
        (RunPaths(config.run_dir).results / "train-monitor.parquet").unlink(missing_ok=True)
        return None
    identity = run_identity(config, run_id=Path(config.run_dir).name, dataset=dataset)
    frame = result_frame(rows, identity, stage=0, epoch=0, phase="train", split="validation")
    for column, values in zip(("stage", "epoch", "train_time_s"), zip(*placement), strict=True):
        frame[column] = list(values)
    frame = pd.concat([frame, pd.DataFrame(health, index=frame.index, dtype="float64")], axis=1)
    return write_table(frame, RunPaths(config.run_dir).results, name="train-monitor.parquet")


def save_epoch(config: Config, checkpoint: MetamorphicCheckpoint) -> None:
    """What a run writes at the end of every epoch (by its only writer): the checkpoint and the monitor table."""
    checkpoint.save(RunPaths(config.run_dir).train_checkpoint)
    write_monitor_table(config, checkpoint.state, checkpoint.dataset["name"])


def run_training(config: Config, *, resume_from: MetamorphicCheckpoint | None, on_epoch_end, progress: Progress,
                 collective: Collective | None = None, stop_after_epochs: int | None = None,
                 step_hook: StepHook | None = None) -> TrainingState:
    """The stage schedule of one run, shared by both drivers; returns the final training state.

    ``resume_from`` is a checkpoint to continue from (or None). After every epoch, every rank calls
    ``on_epoch_end(make_checkpoint, record)``, where ``make_checkpoint()`` builds the checkpoint: the
    driver decides who writes it (the single process always; rank 0 in a distributed run).
    """
    collective = collective or Collective()
    seed_everything(config.seed)
    device = select_device(config)
    smoothed = SmoothedCheckpoint.load(RunPaths(config.run_dir).smoothed)
    bundle = place_training_split(load_data(config), config, device)
    net = build_network(config, prior_network(smoothed)).to(device)
    # The distillation teacher: the prior as smoothed, frozen (the network's own head is fine-tuned).
    teacher = prior_network(smoothed).to(device) if config.train.lambda_distill > 0 else None
    stages = plan_stages(config, len(net.blocks))
    state = TrainingState()
    optimizer_state = None
    ema = ExponentialAverage(inr_parameters(net), config.train.ema_decay) if config.train.ema_decay > 0 else None
    if resume_from is not None:
        net.set_active_blocks(resume_from.active_blocks)
        net.load_state_dict(resume_from.net_state)
        if ema is not None:
            ema.load_state_dict(resume_from.ema)
        state = resume_from.state
        optimizer_state = resume_from.optimizer
        torch.set_rng_state(resume_from.rng)
        if state.stage >= len(stages):
            progress(f"train: already finished ({state.step} steps)")
        else:
            progress(f"train: resuming at stage {state.stage + 1}, epoch {state.epoch}, step {state.step}")

    M = config.train.configs_per_step
    slices = -(-collective.world_size // M)
    if slices > config.data.batch_size:
        raise ConfigError(f"{collective.world_size} workers would cut each micro-batch of data.batch_size="
                          f"{config.data.batch_size} into {slices} slices: use at most {M * config.data.batch_size} "
                          f"workers")
    # Monitoring (and so a sweep's score) sees the validation split only; without one there is none.
    monitor_loader = validation_loader(bundle, config, progress, "train: no per-epoch monitoring (no monitor rows, "
                                                                  "score NaN)")
    batches_per_epoch = len(bundle.train) // config.data.batch_size
    steps_per_epoch = batches_per_epoch // M
    if config.train.steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.train.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"data.batch_size={config.data.batch_size} × train.configs_per_step={M} needs more than the "
            f"{len(bundle.train)} training examples: lower either"
        )
    names = [block_name(*p) for p in net.blocks]
    workers = f", {collective.world_size} workers" if collective.world_size > 1 else ""
    progress(f"train: {len(stages)} stage(s) over blocks {', '.join(names)}; M={M}{workers}, "
             f"{steps_per_epoch} steps/epoch, switches {config.train.switches}")
    if config.train.precision == "bf16" and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        progress("train: warning: train.precision=bf16 on a CPU without bf16 matrix units (AVX512-BF16 or AMX): "
                 "emulated, several times slower than fp32 here (benchmarks/RESULTS.md)")

    def make_checkpoint() -> MetamorphicCheckpoint:
        return MetamorphicCheckpoint(
            config=config.to_dict(), config_hash=config.hash(), arch=dataclasses.asdict(net.arch),
            dataset=dataclasses.asdict(bundle.info), state_dict=net.prior.state_dict(), net_state=net.state_dict(),
            active_blocks=net.active_blocks, state=state, optimizer=optimizer.state_dict(),
            ema=ema.state_dict() if ema is not None else None, rng=torch.get_rng_state(),
            done=state.stage >= len(stages))

    epochs_run = 0
    optimizer = None
    while state.stage < len(stages):
        stage = stages[state.stage]
        net.set_active_blocks(stage.active_blocks)
        if state.epoch == 0:
            previous = stages[stage.index - 1].active_blocks if stage.index > 0 else 0
            initialise_new_blocks(net, previous, stage.active_blocks, config, stage.index)
            fitted = prefit_new_blocks(net, previous, stage.active_blocks, config, stage.index)
            if fitted:
                progress(f"train: stage {stage.index + 1}/{len(stages)} warm start, {config.train.prefit_steps} steps: "
                         f"relative error of the new tensors at γ=0 "
                         f"{' '.join(f'{e:.3f}' for e in fitted.values())}")
        synchronise_parameters(net, collective)
        if ema is not None and state.epoch == 0:
            ema.restart()  # new INRs joined: average from here
        if optimizer is None or config.train.warmup == "per_stage":
            # per_stage: a fresh optimiser, moments and warm-up every stage. once: one optimiser for the whole
            # run, so the blocks already trained go on at the rate they had (a fresh Adam at full rate throws
            # them off: measured, the quickstart's loss jumped from 0.1 to 2.0 at each new stage).
            optimizer = build_optimizer(net, config)
            if optimizer_state is not None and (config.train.warmup == "once" or state.epoch > 0):
                optimizer.load_state_dict(optimizer_state)
            optimizer_state = None
        warmup_steps = config.train.warmup_epochs * steps_per_epoch
        while state.epoch < stage.epochs:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                progress(f"train: stopping after {epochs_run} epoch(s) as asked; resume to continue")
                return state
            start = time.perf_counter()
            batches = EpochBatches(bundle.train, config.data.batch_size, seed=config.seed,
                                   epoch=state.stage * 100_003 + state.epoch)
            label = f"stage {stage.index + 1}/{len(stages)} epoch {state.epoch + 1}/{stage.epochs}"
            means = train_epoch(net, optimizer, batches, state, steps_per_epoch, warmup_steps, config, device,
                                lambda text: progress(f"train: {label} {text}"), collective, step_hook, ema, teacher)
            with ema.applied() if ema is not None else nullcontext():  # the signals describe the evaluated weights
                rows = evaluate_monitor(net, monitor_loader, device, config, bundle.info.image_size, collective)
                alphas, rec_errors = block_alphas(net), reconstruction_errors(net)
            state.epoch += 1
            epochs_run += 1
            record = {"stage": stage.index, "epoch": state.epoch, "global_epoch": len(state.history) + 1,
                      "finished": time.time(),
                      "step": state.step, "seconds": time.perf_counter() - start, **means,
                      **{f"acc@{r['gamma']:g}": r["accuracy"] for r in rows}, "score": monitor_score(rows, config),
                      "alpha": net.alphas[: net.active_blocks].tolist(), "alphas": alphas, "rec_errors": rec_errors,
                      "monitor": rows}
            state.history.append(record)
            if state.epoch >= stage.epochs:
                state.stage += 1
                state.epoch = 0
            on_epoch_end(make_checkpoint, record)
            accuracies = "  ".join(f"acc γ={r['gamma']:g} {r['accuracy']:.4f}" for r in rows)
            alpha_text = " ".join(f"{a:.2f}" for a in net.alphas[: net.active_blocks].tolist())
            worst = " ".join(f"{e:.2f}" for e in worst_by_block(rec_errors).values())  # per block, at γ = 0
            progress(f"train: stage {stage.index + 1}/{len(stages)} epoch {record['epoch']}/{stage.epochs} "
                     f"step {record['step']}  loss {means['loss']:.4f} (task {means['task']:.4f} "
                     f"distill {means['distill']:.4f} feature {means['feature']:.4f} "
                     f"rec {means['rec']:.5f} reg {means['reg']:.2f})  {accuracies}  α [{alpha_text}]  "
                     f"rec [{worst}]  [{record['seconds']:.1f}s]")
            if state.epoch == 0:
                break
    progress(f"train: done, {state.step} steps")
    return state


def train(config: Config, *, resume: bool | None = None, stop_after_epochs: int | None = None,
          progress: Progress | None = None, step_hook: StepHook | None = None) -> Path:
    """The single-process driver: train stage by stage, checkpoint every epoch. Returns the checkpoint path.

    ``resume``: None continues an existing checkpoint of the same configuration, True requires one,
    False starts afresh. ``stop_after_epochs`` ends this call after that many epochs (resumable).
    """
    progress = progress or Progress()
    paths = RunPaths(config.run_dir)
    checkpoint = existing_checkpoint(config, resume)
    if checkpoint is not None:
        progress(f"train: resuming from {paths.train_checkpoint}")

    def on_epoch_end(make_checkpoint, record) -> None:
        save_epoch(config, make_checkpoint())

    run_training(config, resume_from=checkpoint, on_epoch_end=on_epoch_end, progress=progress,
                 stop_after_epochs=stop_after_epochs, step_hook=step_hook)
    progress(f"train: checkpoint {paths.train_checkpoint}")
    return paths.train_checkpoint
