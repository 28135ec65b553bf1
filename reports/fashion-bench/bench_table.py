"""The tables and checks of the fashion-bench report (README.md beside this script), printed as Markdown.

    python reports/fashion-bench/bench_table.py reports/fashion-bench reports/fashion-ablation [--runs runs/fashion-bench]

For each seed's run folder (RUNS/seedN, named by the tables' run ids; --runs, default runs/fashion-bench) it first writes the rows the
other commands do not: the smoothed prior's test accuracy (method "prior", γ = 0) into the seed's table folder,
and it copies the papers' recipe and NeuMeta rows of the ablation (the same protocol and priors) into
``paper-rows/``. Then it prints: test accuracy per method and γ (mean ± std over seeds, K from the rows), the
mechanism checks (α per block, accuracy with every generated block switched off, relative reconstruction error
at γ = 0, how much γ changes the function) and each of the benchmark's targets (against the prior, Individual,
skip and pruning) with its margin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from raymeta.config.loading import load_config
from raymeta.io.artifacts import SmoothedCheckpoint
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.results import read_tables, result_frame, write_table
from raymeta.method import health
from raymeta.method.models import count_params_macs
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.baselines import switch_off_inr
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.identity import run_identity
from raymeta.stages.networks import load_trained, prior_network
from raymeta.stages.runtime import load_data


def prior_rows(seed_dir: Path, runs: Path) -> None:
    """Write ``prior.parquet`` (the smoothed prior on the test split) beside the seed's tables, once."""
    out = seed_dir / "prior.parquet"
    run = runs / seed_dir.name
    if out.exists() or not (run / "smoothed.pt").exists():
        return
    config = load_config(RunPaths(run).config)
    bundle = load_data(config, augment=False)
    prior = prior_network(SmoothedCheckpoint.load(RunPaths(run).smoothed))
    accuracy, loss = accuracy_and_loss(prior, make_loader(bundle.test, 500, shuffle=False), "cpu")
    params, macs = count_params_macs(prior.arch, {}, bundle.info.image_size)
    row = {
        "gamma": 0.0,
        "samples": 1,
        "accuracy": accuracy,
        "loss": loss,
        "params": params,
        "macs": macs,
        "wall_time_s": 0.0,
    }
    identity = run_identity(config, method="prior", run_id=f"{run.name}/prior", dataset=bundle.info.name)
    frame = result_frame([row], identity, stage=0, epoch=config.pretrain.epochs, split="test")
    write_table(frame, seed_dir, name="prior.parquet")


def paper_rows(bench: Path, ablation: Path) -> None:
    """The ablation's "recipe" and "neumeta" rows (the papers' method on this protocol) into bench/paper-rows."""
    out = bench / "paper-rows"
    if out.exists() or not ablation.exists():
        return
    for seed_dir in sorted(ablation.glob("seed*")):
        frame = read_tables(seed_dir)
        frame = frame[frame["method"].isin(["recipe", "neumeta"])]
        extra = [c for c in frame.columns if c.startswith("param.") or c in ("trial_id", "trial_status")]
        write_table(
            frame.drop(columns=extra),
            out,  # ordinary runs here, not a sweep's trials
            name=f"{seed_dir.name}.parquet",
        )


@torch.no_grad()
def mechanism(run: Path) -> str:
    """α, accuracy with the generated blocks off, with the INRs' correction off (the prior base alone), relative
    reconstruction error at γ = 0, γ's effect (test split, K = 1)."""
    net, config, _ = load_trained(RunPaths(run).train_checkpoint)
    bundle = load_data(config, augment=False)
    loader = make_loader(bundle.test, 500, shuffle=False)
    size = bundle.info.image_size
    on = {
        r["gamma"]: r["accuracy"]
        for r in evaluate_gammas(net, loader, "cpu", [0.0, 0.5], samples=1, noise=0.0, seed=0, image_size=size)
    }
    alphas = net.alphas.clone()
    net.alphas.data.zero_() if isinstance(net.alphas, torch.nn.Parameter) else net.alphas.zero_()
    off = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=size)[0]["accuracy"]
    net.alphas.data.copy_(alphas)
    state = {k: v.clone() for k, v in net.hyper.state_dict().items()}
    switch_off_inr(net)  # the INRs' correction switched off: the prior base (and α, head) alone
    base = {
        r["gamma"]: r["accuracy"]
        for r in evaluate_gammas(net, loader, "cpu", [0.5, 0.75], samples=1, noise=0.0, seed=0, image_size=size)
    }
    net.hyper.load_state_dict(state)
    on.update(
        {
            0.75: evaluate_gammas(net, loader, "cpu", [0.75], samples=1, noise=0.0, seed=0, image_size=size)[0][
                "accuracy"
            ]
        }
    )
    errors = health.reconstruction_errors(net)
    kernels = " ".join(f"{e:.3f}" for n, e in errors.items() if n.endswith("weight"))
    biases = " ".join(f"{e:.3f}" for n, e in errors.items() if n.endswith("bias"))
    alpha_text = " ".join(f"{name} {value:.2f}" for name, value in health.block_alphas(net).items())
    return (
        f"| {run.name} | {alpha_text} | {100 * on[0.0]:.2f} | {100 * off:.2f} | {100 * on[0.5]:.2f} "
        f"({100 * base[0.5]:.2f}) | {100 * on[0.75]:.2f} ({100 * base[0.75]:.2f}) | {kernels} | {biases} |"
    )


def main(bench: Path, ablation: Path, runs_root: Path) -> None:
    for seed_dir in sorted(bench.glob("seed*")):
        prior_rows(seed_dir, runs_root)
    paper_rows(bench, ablation)
    frame = read_tables(bench)
    final = frame[(frame["phase"] == "final") & (frame["split"] == "test")]
    table = final.groupby(["method", "gamma"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    gammas = sorted(final.loc[final["method"] == "metamorphic", "gamma"].unique())
    methods = [
        m for m in ("metamorphic", "recipe", "neumeta", "skip", "individual", "prior") if m in set(table["method"])
    ]
    methods += sorted(m for m in set(table["method"]) if m.startswith("prune"))
    cost = final.groupby(["method", "run_id"])["train_time_s"].max().groupby("method").mean()

    def cell(method: str, gamma: float) -> str:
        row = table[(table["method"] == method) & ((table["gamma"] - gamma).abs() < 1e-9)]
        if row.empty:
            return "–"
        mean, std, count = row.iloc[0][["mean", "std", "count"]]
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if count > 1 else "")

    def mean(method: str, gamma: float) -> float:
        row = table[(table["method"] == method) & ((table["gamma"] - gamma).abs() < 1e-9)]
        return float(row.iloc[0]["mean"]) if not row.empty else float("nan")

    print("## Test accuracy (%), mean ± std over seeds\n")
    print("| method | " + " | ".join(f"γ={g:g}" + ("" if 0 <= g <= 0.5 else " †") for g in gammas) + " | training s |")
    print("|---|" + "---|" * (len(gammas) + 1))
    for method in methods:
        seconds = cost.get(method, float("nan"))
        print(f"| {method} | " + " | ".join(cell(method, g) for g in gammas) + f" | {seconds:.0f} |")
    print(
        "\n† unseen γ (outside the training pool [0, 0.5]). prior: the smoothed prior (γ = 0 only). skip: the prior"
        " with every metamorphic block's residual branch removed, head fine-tuned as long as the metamorphic run."
        " Training seconds: per model, mean over runs (baselines: per γ).\n"
    )

    print("## Targets\n")
    prior, skip = mean("prior", 0.0), mean("skip", 0.0)
    prunes = [m for m in methods if m.startswith("prune") and not m.endswith("+ft")]
    checks = [("γ=0 within 1.0 of the prior", mean("metamorphic", 0.0) - prior, -0.01)]
    for gamma in (0.25, 0.5):
        checks.append(
            (f"γ={gamma:g} within 1.5 of Individual", mean("metamorphic", gamma) - mean("individual", gamma), -0.015)
        )
    checks.append(
        ("γ=0.75 (unseen) within 2.5 of Individual", mean("metamorphic", 0.75) - mean("individual", 0.75), -0.025)
    )
    for gamma in (0.0, 0.25, 0.5):
        checks.append(
            (
                f"γ={gamma:g} above skip by ≥ (prior − skip)/2 = {100 * (prior - skip) / 2:.2f}",
                mean("metamorphic", gamma) - mean("skip", gamma),
                (prior - skip) / 2,
            )
        )
    for gamma in (0.25, 0.5, 0.75):
        best = max((mean(m, gamma) for m in prunes), default=float("nan"))
        checks.append((f"γ={gamma:g} ahead of every pruning without fine-tune", mean("metamorphic", gamma) - best, 0.0))
    print("| target | margin (points) | met |\n|---|---|---|")
    for name, margin, threshold in checks:
        met = "yes" if margin >= threshold else ("–" if margin != margin else "**no**")
        print(f"| {name} | {100 * margin:+.2f} (need ≥ {100 * threshold:+.2f}) | {met} |")

    runs = sorted(p for p in runs_root.glob("seed*") if RunPaths(p).train_checkpoint.exists())
    if runs:
        print("\n## Mechanism (test split, K = 1)\n")
        print(
            "| run | α per block | acc γ=0 | acc γ=0, every α = 0 | acc γ=0.5 (INR correction off) | "
            "acc γ=0.75 (INR correction off) | rel. error γ=0: kernels | biases |\n|---|---|---|---|---|---|---|---|"
        )
        for run in runs:
            print(mechanism(run), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", type=Path, help="the benchmark's tables (reports/fashion-bench)")
    parser.add_argument("ablation", type=Path, help="the ablation's tables (reports/fashion-ablation)")
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("runs/fashion-bench"),
        help="the seeds' run folders (seedN): the prior's rows and the mechanism checks need them",
    )
    args = parser.parse_args()
    main(args.bench, args.ablation, args.runs)
