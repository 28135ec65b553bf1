"""The full-network comparison's table and targets (README.md beside this script), printed as Markdown.

    python reports/fashion-full/full_table.py reports/fashion-full > reports/fashion-full/table.md

Reads the final test rows of every seed's tables (FOLDER/seedN, as make.sh copies them) and prints test accuracy
per row and γ, mean ± std over seeds, with each row's training cost (per seed: every model it needs counted once,
so a per-γ baseline's networks add up), unseen γ marked †; then each target of the protocol with its margin.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from raymeta.io.results import read_tables

ROWS = (
    ("metamorphic+calibrated", "raymeta (one network), calibrated on 512 unlabelled training images"),
    ("metamorphic", "raymeta (one network), uncalibrated"),
    ("metamorphic-inr-off+calibrated", "INR correction switched off, calibrated"),
    ("metamorphic-inr-off", "INR correction switched off (merged prior base, trained α and head)"),
    ("merge+calibrated", "untrained merge, calibrated"),
    ("merge", "untrained merge (the smoothed prior resampled; γ = 0 is the prior)"),
    ("individual", "Individual (a network per γ)"),
    ("prune-l1+ft", "L1 pruning + fine-tune (epochs)"),
    ("prune-l1+ft-equal", "L1 pruning + fine-tune at equal total training cost"),
    ("prune-l1", "L1 pruning, no fine-tune"),
    ("slimmable", "US-Nets slimmable network, equal training cost"),
    ("skip", "skip (the metamorphic blocks removed)"),
)
"""The table's rows in order: method column → what the row is. Methods not listed follow, by name."""


def final_test_rows(folder: Path) -> pd.DataFrame:
    """Final rows on the test split of every seed's tables; ``seed`` is the first part of the run id."""
    frames = [read_tables(seed) for seed in sorted(folder.glob("seed*")) if seed.is_dir()]
    if not frames:
        raise SystemExit(f"error: {folder} holds no seed*/ folder of result tables (make.sh copies them there)")
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["phase"] == "final") & (frame["split"] == "test")]
    if "calibration" in frame:  # rows evaluated with eval.calibration are rows of their own (tables written
        # before their method names said so: add it)
        calibrated = (frame["calibration"].fillna(0) > 0) & ~frame["method"].str.endswith("+calibrated")
        frame.loc[calibrated, "method"] = frame.loc[calibrated, "method"] + "+calibrated"
    frame = frame.drop_duplicates(["run_id", "method", "gamma", "samples"], keep="last")
    return frame.assign(seed=frame["run_id"].str.split("/").str[0])


def summary(final: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Accuracy per (method, γ) — mean, std and count over seeds — and each method's training cost, seconds per
    seed: per seed the sum over its models (run ids) of each model's cost, then the mean over seeds."""
    accuracy = final.groupby(["method", "gamma"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    per_model = final.groupby(["method", "seed", "run_id"])["train_time_s"].max()
    cost = per_model.groupby(["method", "seed"]).sum(min_count=1).groupby("method").mean()
    return accuracy, cost


def main(folder: Path) -> None:
    final = final_test_rows(folder)
    accuracy, cost = summary(final)
    methods = [m for m, _ in ROWS if m in set(final["method"])]
    methods += sorted(set(final["method"]) - set(methods))
    labels = dict(ROWS)
    gammas = sorted(final["gamma"].unique())
    reference = final[final["method"].isin(["metamorphic", "metamorphic+calibrated"])]
    unseen = set(reference.loc[~reference["seen"], "gamma"]) if len(reference) else set()
    seeds = sorted(final["seed"].unique())

    def stat(method: str, gamma: float, column: str = "mean") -> float:
        row = accuracy[(accuracy["method"] == method) & ((accuracy["gamma"] - gamma).abs() < 1e-9)]
        return float(row.iloc[0][column]) if not row.empty else math.nan

    def cell(method: str, gamma: float) -> str:
        mean, std, count = stat(method, gamma), stat(method, gamma, "std"), stat(method, gamma, "count")
        if math.isnan(mean):
            return ""
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if count > 1 else "")

    samples = sorted(reference["samples"].unique()) if len(reference) else []
    print(f"## Test accuracy (%), mean ± std over seeds {', '.join(seeds)}\n")
    head = " | ".join(f"γ={g:g}" + (" †" if g in unseen else "") for g in gammas)
    print(f"| row | {head} | training cost, s per seed |")
    print("|---|" + "---|" * (len(gammas) + 1))
    for method in methods:
        seconds = cost.get(method, math.nan)
        spent = "–" if not math.isfinite(seconds) else f"{seconds:.0f}"
        cells = " | ".join(cell(method, g) for g in gammas)
        print(f"| {labels.get(method, method)} (`{method}`) | {cells} | {spent} |")
    print(
        "\n† unseen γ (outside the training pool). raymeta's rows average K = "
        f"{', '.join(str(k) for k in samples) or '–'} noisy weight samples. Training cost: seconds of training per "
        "seed, every model of the row counted once (Individual and pruning: one network per γ; the INR-off rows "
        "are the trained run itself; merge trains nothing), not counting the prior's pretraining that all of "
        "them start from.\n"
    )

    def margin_row(name: str, margin: float, need: float) -> str:
        met = "–" if math.isnan(margin) or math.isnan(need) else ("yes" if margin >= need else "**no**")
        need_text = "–" if math.isnan(need) else f"{100 * need:+.2f}"
        margin_text = "–" if math.isnan(margin) else f"{100 * margin:+.2f}"
        return f"| {name} | {margin_text} (need ≥ {need_text}) | {met} |"

    def gap(method: str, other: str, gamma: float) -> float:
        return stat(method, gamma) - stat(other, gamma)

    def noise(*methods_: str, gamma: float) -> float:
        stds = [stat(m, gamma, "std") for m in methods_]
        return max(stds) if all(math.isfinite(s) for s in stds) else math.nan

    # the targets judge the calibrated network where its rows exist (what raymeta evaluates with eval.calibration),
    # against the merge and INR-off rows calibrated alike
    suffix = "+calibrated" if "metamorphic+calibrated" in set(final["method"]) else ""
    main = f"metamorphic{suffix}"
    checks = [
        ("γ=0.75 † within 2.5 of Individual", gap(main, "individual", 0.75), -0.025),
        ("γ=0.625 † within 1.5 of Individual", gap(main, "individual", 0.625), -0.015),
        ("γ=−0.25 † not below γ=0", stat(main, -0.25) - stat(main, 0.0), 0.0),
    ]
    seen = [g for g in gammas if g not in unseen]
    for gamma in seen:
        if not math.isnan(stat("individual", gamma)):
            checks.append((f"γ={gamma:g} within 1.0 of Individual", gap(main, "individual", gamma), -0.01))
    checks.append(("γ=0 within 0.3 of the prior (merge at γ=0)", gap(main, "merge", 0.0), -0.003))
    for gamma in (g for g in gammas if g >= 0.25):
        checks.append(
            (
                f"γ={gamma:g} ahead of pruning + fine-tune at equal cost",
                gap(main, "prune-l1+ft-equal", gamma),
                0.0,
            )
        )
    for other in [f"merge{suffix}", f"metamorphic-inr-off{suffix}"]:
        for gamma in (0.5, 0.75):
            checks.append(
                (
                    f"γ={gamma:g} above {other} by more than the seed noise",
                    gap(main, other, gamma),
                    noise(main, other, gamma=gamma),
                )
            )
    print("## Targets (points)\n")
    print("| target | margin (points) | met |\n|---|---|---|")
    for name, margin, need in checks:
        print(margin_row(name, margin, need))
    print(
        "\nSeed noise: the larger std over seeds of the two rows compared (– with one seed). A target whose rows "
        "are not in the tables reads –."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the comparison's tables: FOLDER/seedN/*.parquet")
    main(parser.parse_args().folder)
