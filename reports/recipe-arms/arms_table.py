"""The arms' table (README.md beside this script), printed as Markdown: per arm trained by ``arms.py``, on the
test split at K = 1 with noise-free coordinates, of the weights evaluation uses (the EMA's where there is one).

    python reports/recipe-arms/arms_table.py RUNS

Columns: optimiser steps; α at the end; relative RMS error at γ = 0 of each kernel (conv1 / conv2) and bias
against the smoothed prior (1: no closer than zeros); accuracy at γ = 0; accuracy with α = 0 (the generated
block switched off); the loss balance of each kernel at the end and at W = 0 (raymeta.method.health.loss_balance:
reconstruction pull over regulariser pull, below 1 the regulariser wins; "–" without a regulariser). An arm
not trained yet is listed as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.method import health
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data
from raymeta.stages.train import objective_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arms import ARMS  # noqa: E402  (the arms' one definition, beside this script)


def pair(values: dict[str, float], suffix: str) -> str:
    """The values of the tensors whose path ends with ``suffix``, conv1 first: ``1.01 / 1.00``."""
    return " / ".join(f"{value:.2f}" for name, value in values.items() if name.endswith(suffix)) or "–"


@torch.no_grad()
def accuracy_at_zero(net, loader, size: int) -> float:
    rows = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=size)
    return rows[0]["accuracy"]


def arm_row(arm: str, run: Path) -> str:
    change = ARMS[arm][0]
    checkpoint = RunPaths(run).train_checkpoint
    if not checkpoint.is_file():
        return f"| {arm} | {change} | not trained | | | | | | | |"
    net, config, payload = load_trained(checkpoint)
    bundle = load_data(config, augment=False)
    loader, size = make_loader(bundle.test, 500, shuffle=False), bundle.info.image_size
    on = accuracy_at_zero(net, loader, size)
    alphas = net.alphas.detach().clone()
    net.alphas.data.zero_() if isinstance(net.alphas, torch.nn.Parameter) else net.alphas.zero_()
    off = accuracy_at_zero(net, loader, size)
    net.alphas.data.copy_(alphas) if isinstance(net.alphas, torch.nn.Parameter) else net.alphas.copy_(alphas)
    errors = health.reconstruction_errors(net)
    balance = health.loss_balance(net, objective_of(config), config.train.configs_per_step)
    alpha = " ".join(f"{value:.3f}" for value in health.block_alphas(net).values())
    done = "" if payload.done else " (unfinished)"
    return (
        f"| {arm} | {change} | {payload.state.step}{done} | {alpha} | {pair(errors, 'weight')} | "
        f"{pair(errors, 'bias')} | {100 * on:.2f} | {100 * off:.2f} | {pair(balance.ratio, 'weight')} | "
        f"{pair(balance.at_zero, 'weight')} |"
    )


def table(runs: Path) -> str:
    """The Markdown table of the arms under ``runs``, one row per arm of :data:`arms.ARMS`."""
    header = (
        "| arm | change | steps | α at the end | kernel rel. error conv1 / conv2 | bias rel. error | acc γ=0 | "
        "acc with α = 0 | balance conv1 / conv2 | balance at W = 0 |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(arm_row(arm, runs / arm) for arm in ARMS)]) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the arms' runs (arms.py's RUNS)")
    print(table(parser.parse_args().runs), end="")
