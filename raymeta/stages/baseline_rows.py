"""What every baseline shares: a network's test row, the rows already written (resume), and the training time of
the run's metamorphic network (the budget of the baselines trained at equal cost)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths
from raymeta.io.results import ResultsError, read_tables
from raymeta.method.models import ResNet, count_params_macs
from raymeta.method.scoring import accuracy_and_loss

TRAINED_METHODS = ("metamorphic", "recipe", "neumeta")
"""The method column of a trained metamorphic network's own rows (:func:`raymeta.config.method_name`)."""


def metamorphic_train_seconds(run_dir: str | Path) -> float | None:
    """Seconds the metamorphic network of ``run_dir`` trained: the largest ``train_time_s`` of its own rows in
    RUN_DIR/results (run id the folder's name; its final evaluations, else its training-monitor rows). None when
    there are none."""
    paths = RunPaths(str(run_dir))
    folder = Path(paths.results)
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        return None
    frame = read_tables(folder)
    own = frame[frame["method"].isin(TRAINED_METHODS) & (frame["run_id"] == paths.root.name)]
    for phase in ("final", "train"):
        seconds = float(own.loc[own["phase"] == phase, "train_time_s"].max())
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


def required_train_seconds(run_dir: str | Path, what: str, otherwise: str) -> float:
    """:func:`metamorphic_train_seconds`, or a ConfigError saying that ``what`` needs it and what to do."""
    seconds = metamorphic_train_seconds(run_dir)
    if seconds is None:
        paths = RunPaths(str(run_dir))
        raise ConfigError(
            f"{what} needs the training time of the metamorphic run of {run_dir}, and {paths.results} holds no "
            f"row of it (method {', '.join(TRAINED_METHODS)} with run id {paths.root.name!r}): run `raymeta run` "
            f"(or train and evaluate) there first, or {otherwise}"
        )
    return seconds


def finished_baselines(folder: Path, config_hash: str) -> set[tuple[str, float]]:
    """(method, γ) pairs already written to ``folder`` by a baseline of the same settings (resume)."""
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        return set()
    try:
        frame = read_tables(folder)
    except ResultsError:
        return set()
    done = frame[(frame["config_hash"] == config_hash) & (frame["phase"] == "final") & (frame["split"] == "test")]
    return {(m, round(g, 9)) for m, g in zip(done["method"], done["gamma"], strict=True)}


def evaluate_network(model: ResNet, loader, device, gamma: float, widths, image_size: int) -> dict:
    """A plain network's row at γ (K = 1): accuracy and loss over ``loader``, parameters and MACs of its inference
    network (BatchNorm folded) at the hidden ``widths``."""
    start = time.perf_counter()
    accuracy, loss = accuracy_and_loss(model, loader, device)
    params, macs = count_params_macs(model.arch, widths, image_size)  # inference network, BatchNorm folded
    return {
        "gamma": float(gamma),
        "samples": 1,
        "accuracy": accuracy,
        "loss": loss,
        "params": params,
        "macs": macs,
        "wall_time_s": time.perf_counter() - start,
    }
