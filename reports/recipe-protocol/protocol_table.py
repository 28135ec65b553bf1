"""The tables and checks of the recipe's CPU reproduction protocol (jobs/fashion_mnist_recipe.yaml; issue 22),
printed as Markdown.

    python reports/recipe-protocol/protocol_table.py reports/recipe-protocol [--runs runs/recipe-protocol]

TABLES holds seedN/{recipe,neumeta}/ (the runs' result tables, the skip floor's with the recipe's) and optionally
seedN/ablation/ (the leave-one-out sweep's). For each seed whose run folder (RUNS/seedN) holds the prior, it
first writes the smoothed prior's test accuracy (method "prior", γ = 0) into TABLES/seedN/prior/, once. Then it
prints: test accuracy per method and γ (mean ± std over seeds, K = eval.samples); the issue's targets with their
margins; per recipe and NeuMeta run (from its checkpoint, test split, K = 1) |α| per block, the accuracy at γ = 0
with every block on, with each generated block removed (its α = 0) and with all removed, and the loss balance
of each kernel; α and the validation score against the step, per epoch of each recipe run; the Table 1
leave-one-out rows (reports/fashion-ablation/ablation_table.py) with each Δ's sign against the paper's.
"""

from __future__ import annotations

import argparse
import math
import runpy
from pathlib import Path

import torch

from raymeta.config.migration import stored_config
from raymeta.io.artifacts import SmoothedCheckpoint
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.results import read_tables, result_frame, write_table
from raymeta.method import health
from raymeta.method.models import count_params_macs
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.identity import run_identity
from raymeta.stages.networks import load_trained, prior_network
from raymeta.stages.runtime import load_data
from raymeta.stages.train import objective_of

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("recipe", "neumeta", "skip", "prior")
PAPER_GAINS = {
    "recipe without alpha_scaling": ("seen", 3.5),
    "recipe without grad_accumulation": ("seen", 1.6),
    "recipe without inr_init": ("seen", 1.3),
    "recipe without separate_bias_inr": ("seen", 0.7),
    "recipe without incremental": ("unseen", 12.1),
}
"""Table 1 of HTTY (CIFAR-100, ResNet-56): what each component adds, "Ours" minus the row without it (points;
incremental training on unseen γ, 65.36 − 53.22), so the row's Δ against the recipe is minus this."""


def prior_rows(tables: Path, run: Path) -> None:
    """Write TABLES/seedN/prior/prior.parquet (the smoothed prior on the test split) once."""
    out = tables / run.name / "prior"
    prior_dir = run / "prior"
    if (out / "prior.parquet").exists() or not (prior_dir / "smoothed.pt").exists():
        return
    smoothed = SmoothedCheckpoint.load(RunPaths(prior_dir).smoothed)
    config = stored_config(smoothed.config)  # the configuration that made the prior
    bundle = load_data(config, augment=False)
    prior = prior_network(smoothed)
    accuracy, loss = accuracy_and_loss(prior, make_loader(bundle.test, 500, shuffle=False), "cpu")
    params, macs = count_params_macs(prior.arch, {}, bundle.info.image_size)
    row = {"gamma": 0.0, "samples": 1, "accuracy": accuracy, "loss": loss, "params": params, "macs": macs}
    identity = run_identity(config, method="prior", run_id=f"{run.name}/prior", dataset=bundle.info.name)
    frame = result_frame([{**row, "wall_time_s": 0.0}], identity, stage=0, epoch=config.pretrain.epochs, split="test")
    write_table(frame, out, name="prior.parquet")


def accuracy_tables(tables: Path) -> dict:
    """(method, γ) → test accuracies over seeds (%), from the final test rows of every seed's tables."""
    folders = [p for seed in sorted(tables.glob("seed*")) for p in seed.iterdir() if p.name != "ablation"]
    frame = read_tables(folders)
    final = frame[(frame["phase"] == "final") & (frame["split"] == "test")]
    out: dict = {}
    for (method, gamma), group in final.groupby(["method", "gamma"]):
        out[(method, round(float(gamma), 6))] = [100 * a for a in group["accuracy"]]
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@torch.no_grad()
def mechanism(run: Path) -> str:
    """|α| per block, accuracy at γ = 0 (K = 1, test) on, with each block's α = 0 and with all, kernels' balance."""
    net, config, payload = load_trained(RunPaths(run).train_checkpoint)
    bundle = load_data(config, augment=False)
    loader, size = make_loader(bundle.test, 500, shuffle=False), bundle.info.image_size

    def accuracy() -> float:
        rows = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=size)
        return 100 * rows[0]["accuracy"]

    alphas = net.alphas.detach().clone()
    on, removed = accuracy(), []
    for index in range(len(alphas)):
        net.alphas.data[index] = 0.0
        removed.append(accuracy())
        net.alphas.data.copy_(alphas)
    net.alphas.data.zero_()
    off = accuracy()
    net.alphas.data.copy_(alphas)
    names = list(health.block_alphas(net))
    alpha_text = " ".join(f"{n} {abs(a):.3f}" for n, a in zip(names, alphas.tolist(), strict=True))
    removed_text = " ".join(f"{n} {a:.2f} ({a - on:+.2f})" for n, a in zip(names, removed, strict=True))
    balance = health.loss_balance(net, objective_of(config), config.train.configs_per_step)
    kernels = " ".join(f"{v:.3f}" for n, v in balance.ratio.items() if n.endswith("weight")) or "–"
    return (
        f"| {run.parent.name}/{run.name} | {payload.state.step} | {alpha_text} | {on:.2f} | {removed_text} | "
        f"{off:.2f} | {kernels} |"
    )


def trajectory(run: Path) -> list[str]:
    """α per block and the validation score at the end of every epoch of a run (its checkpoint's history)."""
    payload = load_trained(RunPaths(run).train_checkpoint).checkpoint
    lines = []
    for record in payload.state.history:
        alphas = " ".join(f"{n} {a:+.3f}" for n, a in record.alphas.items())
        lines.append(
            f"| {run.parent.name}/{run.name} | {record.stage + 1} | {record.step} | {alphas} | {100 * record.score:.2f} |"
        )
    return lines


def ablation(tables: Path) -> None:
    folders = sorted(str(p) for p in tables.glob("seed*/ablation") if any(p.glob("*.parquet")))
    if not folders:
        return
    print("\n## Table 1, leave-one-out (tune_spaces/ablation.yaml on this protocol)\n")
    script = runpy.run_path(str(ROOT / "reports" / "fashion-ablation" / "ablation_table.py"))
    script["main"](folders)
    sweeps = [script["per_sweep"](folder) for folder in folders]
    print("\n| row | paper: Δ against the recipe | here: Δ (mean over seeds) | same sign |\n|---|---|---|---|")
    for variant, (split, gain) in PAPER_GAINS.items():
        if not all(variant in s.index and "recipe" in s.index for s in sweeps):
            continue
        delta = sum(s.loc[variant, split] - s.loc["recipe", split] for s in sweeps) / len(sweeps)
        same = "yes" if (delta < 0) == (-gain < 0) else "**no**"
        print(f"| {script['LABELS'].get(variant, variant)} | {-gain:+.1f} ({split} γ) | {delta:+.2f} | {same} |")


def main(tables: Path, runs: Path) -> None:
    for run in sorted(runs.glob("seed*")):
        prior_rows(tables, run)
    accuracies = accuracy_tables(tables)
    gammas = sorted({g for m, g in accuracies if m == "recipe"})
    print("## Test accuracy (%), mean ± std over seeds\n")
    print("| method | " + " | ".join(f"γ={g:g}" for g in gammas) + " |\n|---|" + "---|" * len(gammas))
    for method in METHODS:
        cells = []
        for gamma in gammas:
            mean, std = mean_std(accuracies.get((method, gamma), []))
            cells.append("–" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    print("\nskip: the prior without its metamorphic blocks (head fine-tuned as long as the recipe run); prior: γ = 0.")

    print("\n## Targets (issue 22)\n\n| target | margin (points) | met |\n|---|---|---|")
    for gamma in (g for g in gammas if 0 <= g <= 0.5):
        recipe, recipe_std = mean_std(accuracies.get(("recipe", gamma), []))
        skip, skip_std = (
            mean_std(accuracies.get(("skip", gamma), []))
            if ("skip", gamma) in accuracies
            else mean_std(accuracies.get(("skip", 0.0), []))
        )
        noise = max(recipe_std, skip_std)
        margin = recipe - skip
        print(
            f"| γ={gamma:g}: above skip by more than the seed noise ({noise:.2f}) | {margin:+.2f} | "
            f"{'yes' if margin > noise else '**no**' if margin == margin else '–'} |"
        )
        neumeta, _ = mean_std(accuracies.get(("neumeta", gamma), []))
        margin = recipe - neumeta
        print(
            f"| γ={gamma:g}: at least 5 above NeuMeta | {margin:+.2f} | "
            f"{'yes' if margin >= 5 else '**no**' if margin == margin else '–'} |"
        )

    recipe_runs = sorted(p for p in runs.glob("seed*/recipe") if RunPaths(p).train_checkpoint.exists())
    neumeta_runs = sorted(p for p in runs.glob("seed*/neumeta") if RunPaths(p).train_checkpoint.exists())
    if recipe_runs or neumeta_runs:
        print("\n## Mechanism (test split, K = 1, γ = 0)\n")
        print("Target: |α| ≥ 0.3 in every block, and removing any generated block costs accuracy.\n")
        print(
            "| run | steps | abs(α) per block | acc | acc with the block removed (Δ) | acc, all removed | "
            "balance of the kernels |\n|---|---|---|---|---|---|---|"
        )
        for run in recipe_runs + neumeta_runs:
            print(mechanism(run), flush=True)
    if recipe_runs:
        print("\n## α against steps (recipe runs, every epoch; score: mean validation accuracy over the pool's ends)\n")
        print("| run | stage | step | α per block | score |\n|---|---|---|---|---|")
        for run in recipe_runs:
            print("\n".join(trajectory(run)))
    ablation(tables)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", type=Path, help="the protocol's tables (reports/recipe-protocol)")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipe-protocol"), help="the runs (checkpoints)")
    args = parser.parse_args()
    main(args.tables, args.runs)
