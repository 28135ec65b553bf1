"""What a training run reports and keeps of every epoch: accuracy at the monitored γ on the validation split and
its score, the epoch's progress line, the monitor table (``RUN_DIR/results/train-monitor.parquet``) that carries
the accuracies with the health signals, and the training checkpoint (``RUN_DIR/train/checkpoint.pt``): what it
holds, writing it, and finding the one to continue from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from raymeta.config.schema import Config
from raymeta.errors import CheckpointError
from raymeta.io.artifacts import EpochRecord, MetamorphicCheckpoint, TrainingState
from raymeta.io.data import DatasetInfo
from raymeta.io.files import RunPaths, copy_file
from raymeta.io.progress import format_duration, throughput
from raymeta.io.results import (
    ALPHA_PREFIX,
    BALANCE_AT_ZERO_PREFIX,
    BALANCE_PREFIX,
    REC_PREFIX,
    result_frame,
    write_table,
)
from raymeta.method.ema import ExponentialAverage
from raymeta.method.health import worst_by_block
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.schedule import Stage
from raymeta.stages.collective import Collective
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.identity import run_identity


def monitor_gammas(config: Config) -> list[float]:
    """The γ values monitored every epoch: ``train.monitor_gammas``, else the two ends of the training pool."""
    if config.train.monitor_gammas is not None:
        return sorted(set(config.train.monitor_gammas))
    low, high = config.train.gamma_pool
    return sorted({low, high})


def monitor_score(rows: list[dict], config: Config) -> float:
    """Mean accuracy over the monitored γ values inside the training pool (NaN when none is inside)."""
    low, high = config.train.gamma_pool
    seen = [row["accuracy"] for row in rows if low - 1e-9 <= row["gamma"] <= high + 1e-9]
    return sum(seen) / len(seen) if seen else float("nan")


def evaluate_monitor(
    net: MetamorphicNetwork, loader, device, config: Config, image_size: int, collective: Collective
) -> list[dict]:
    """Accuracy at the monitored γ values (K = 1) on ``loader`` (the validation split), the γ values shared
    out over the ranks. No loader (no validation split): no rows."""
    if loader is None:
        return []
    net.eval()
    gammas = monitor_gammas(config)
    rows = evaluate_gammas(
        net,
        loader,
        device,
        gammas[collective.rank :: collective.world_size],
        samples=1,
        noise=0.0,
        seed=config.seed,
        image_size=image_size,
    )
    gathered = [row for part in collective.all_gather_object(rows) for row in part]
    return sorted(gathered, key=lambda row: row["gamma"])


def epoch_summary(
    record: EpochRecord, stage: Stage, stage_count: int, *, steps: int, images: int, epochs_left: int
) -> str:
    """The progress line of a finished epoch: its losses, monitored accuracies, α, worst reconstruction error and
    lowest loss balance per block (at γ = 0; no balance without a regulariser), its time, throughput (``steps`` optimiser steps and ``images`` training images over
    the epoch's time, monitoring included) and the time left: ``epochs_left`` more epochs at this one's time
    (later stages train more blocks, so their epochs take longer: an ETA from the last epoch errs short)."""
    losses = record.losses
    accuracies = "  ".join(f"acc γ={row['gamma']:g} {row['accuracy']:.4f}" for row in record.monitor)
    alphas = " ".join(f"{a:.2f}" for a in record.alphas.values())
    worst = " ".join(f"{e:.2f}" for e in worst_by_block(record.rec_errors).values())
    lowest = " ".join(f"{b:.3g}" for b in worst_by_block(record.balance, lowest=True).values())
    balance = f"  balance [{lowest}]" if lowest else ""
    return (
        f"train: stage {stage.index + 1}/{stage_count} epoch {record.epoch}/{stage.epochs} "
        f"step {record.step}  loss {losses['loss']:.4f} (task {losses['task']:.4f} "
        f"distill {losses['distill']:.4f} feature {losses['feature']:.4f} rec {losses['rec']:.5f} "
        f"reg {losses['reg']:.2f})  {accuracies}  α [{alphas}]  rec [{worst}]{balance}  [{record.seconds:.1f}s, "
        f"{throughput(steps, images, record.seconds)}, ETA {format_duration(epochs_left * record.seconds)}]"
    )


def health_columns(record: EpochRecord) -> dict[str, float]:
    """The health signals (:mod:`raymeta.method.health`) of an epoch as the optional columns of monitor rows:
    ``alpha.<block>``, ``rec.<tensor>``, ``balance.<tensor>`` and ``balance_at_zero.<tensor>``."""
    signals = (
        (ALPHA_PREFIX, record.alphas),
        (REC_PREFIX, record.rec_errors),
        (BALANCE_PREFIX, record.balance),
        (BALANCE_AT_ZERO_PREFIX, record.balance_at_zero),
    )
    return {prefix + name: float(value) for prefix, values in signals for name, value in values.items()}


def write_monitor_table(config: Config, state: TrainingState, dataset: str) -> Path | None:
    """The per-epoch monitor rows of the whole run so far, rewritten atomically as one Parquet file.

    Each row carries its epoch's health signals as ``alpha.<block>``, ``rec.<tensor>``, ``balance.<tensor>`` and
    ``balance_at_zero.<tensor>`` columns (the same on every γ row of the epoch; NaN for a block not yet active,
    or for a record from before the signals)."""
    import pandas as pd

    rows, placement, health, elapsed = [], [], [], 0.0
    for record in state.history:
        elapsed += record.seconds
        for row in record.monitor:
            rows.append(row)
            placement.append((record.stage, record.global_epoch, elapsed))
            health.append(health_columns(record))
    if not rows:  # no validation split (or a checkpoint from before monitor rows): no table, not a stale one
        (RunPaths(config.run_dir).results / "train-monitor.parquet").unlink(missing_ok=True)
        return None
    identity = run_identity(config, run_id=RunPaths(config.run_dir).root.name, dataset=dataset)
    frame = result_frame(rows, identity, stage=0, epoch=0, phase="train", split="validation")
    for column, values in zip(("stage", "epoch", "train_time_s"), zip(*placement, strict=True), strict=True):
        frame[column] = list(values)
    frame = pd.concat([frame, pd.DataFrame(health, index=frame.index, dtype="float64")], axis=1)
    return write_table(frame, RunPaths(config.run_dir).results, name="train-monitor.parquet")


def training_checkpoint(
    config: Config,
    net: MetamorphicNetwork,
    dataset: DatasetInfo,
    state: TrainingState,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialAverage | None,
    stage_count: int,
) -> MetamorphicCheckpoint:
    """The run as it stands after an epoch: all that evaluating it, or resuming it exactly, needs."""
    return MetamorphicCheckpoint(
        config=config.to_dict(),
        config_hash=config.hash(),
        arch=dataclasses.asdict(net.arch),
        dataset=dataclasses.asdict(dataset),
        state_dict=net.prior.state_dict(),
        net_state=net.state_dict(),
        active_blocks=net.active_blocks,
        state=state,
        optimizer=optimizer.state_dict(),
        ema=ema.state_dict() if ema is not None else None,
        rng=torch.get_rng_state(),
        done=state.stage >= stage_count,
    )


def existing_checkpoint(config: Config, resume: bool | None) -> MetamorphicCheckpoint | None:
    """The run's training checkpoint to continue from, per ``resume`` (None: if there is one; True: required;
    False: never). A checkpoint of another configuration, or an unfinished one of an earlier format, is an error."""
    path = RunPaths(config.run_dir).train_checkpoint
    if resume and not path.is_file():
        raise CheckpointError(f"--resume: no training checkpoint at {path}")
    if resume is False or not path.is_file():
        return None
    return MetamorphicCheckpoint.load_to_resume(path, expect_hash=config.hash())


def save_epoch(config: Config, checkpoint: MetamorphicCheckpoint, *, local_copy: Path | None = None) -> None:
    """What a run writes at the end of every epoch (by its only writer): the checkpoint and the monitor table.
    With ``local_copy``, the checkpoint is serialised there once and that file copied into the run folder."""
    target = RunPaths(config.run_dir).train_checkpoint
    if local_copy is None:
        checkpoint.save(target)
    else:
        copy_file(checkpoint.save(local_copy), target)
    write_monitor_table(config, checkpoint.state, checkpoint.dataset["name"])
