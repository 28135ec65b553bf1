"""Evaluation: accuracy and loss of a generated network at every γ of a grid, as Parquet result rows."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from raymeta.config import Config

RESULT_COLUMNS = ["run_id", "method", "config_hash", "git_commit", "dataset", "architecture", "phase", "stage",
                  "epoch", "gamma", "seen", "samples", "accuracy", "loss", "params", "macs", "wall_time_s",
                  "train_time_s"]
"""The one results schema. ``phase`` is "final" for an evaluation of a finished model and "train" for the
per-epoch monitor rows written during training; ``wall_time_s`` is the time of that evaluation and
``train_time_s`` the training time spent to reach the evaluated model (its training cost)."""


@torch.no_grad()
def accuracy_and_loss(model: Callable[[torch.Tensor], torch.Tensor], loader, device) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` over a loader."""
    correct, total, loss = 0, 0, 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
        total += len(labels)
    return correct / total, loss / total


def is_seen(gamma: float, pool: list[float]) -> bool:
    return pool[0] - 1e-9 <= gamma <= pool[1] + 1e-9


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@torch.no_grad()
def evaluate_gammas(net, loader, device, gammas: list[float], *, samples: int, noise: float, seed: int,
                    image_size: int) -> list[dict]:
    """One row per γ: accuracy, loss, parameters and MACs of the network generated at that γ.

    With K = ``samples`` > 1 the K noisy weight sets are generated in one batched pass and averaged.
    """
    net.eval()
    rows = []
    for gamma in gammas:
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        weights = net.generate(gamma, samples=samples, noise=noise if samples > 1 else 0.0, generator=generator)
        accuracy, loss = accuracy_and_loss(lambda x: net(x, weights), loader, device)
        params, macs = net.params_macs(gamma, image_size)
        rows.append({"gamma": float(gamma), "samples": samples, "accuracy": accuracy, "loss": loss,
                     "params": params, "macs": macs, "wall_time_s": time.perf_counter() - start})
    return rows


def result_frame(rows: list[dict], config: Config, *, method: str, run_id: str, dataset: str, stage: int,
                 epoch: int, phase: str = "final", train_time_s: float = float("nan")) -> pd.DataFrame:
    """Rows with the run's identity columns, in the one results schema."""
    architecture = f"resnet{config.model.depth}-" + "-".join(str(w) for w in config.model.widths)
    common = {"run_id": run_id, "method": method, "config_hash": config.hash(), "git_commit": git_commit(),
              "dataset": dataset, "architecture": architecture, "phase": phase, "stage": stage, "epoch": epoch,
              "train_time_s": float(train_time_s)}
    frame = pd.DataFrame([{**common, **row, "seen": is_seen(row["gamma"], config.train.gamma_pool)} for row in rows])
    return frame[RESULT_COLUMNS]


def write_table(frame: pd.DataFrame, folder: str | Path, name: str | None = None) -> Path:
    """Write a new Parquet file atomically; existing tables are never touched."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.parquet")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def format_rows(frame: pd.DataFrame) -> str:
    """A plain-text table of accuracy against γ for the terminal."""
    lines = [f"{'gamma':>7} {'seen':>6} {'accuracy':>9} {'loss':>8} {'params':>9} {'MACs':>12}"]
    for row in frame.itertuples():
        lines.append(f"{row.gamma:7.3f} {('seen' if row.seen else 'unseen'):>6} {row.accuracy:9.4f} "
                     f"{row.loss:8.4f} {row.params:9d} {row.macs:12d}")
    return "\n".join(lines)
