"""Deploy to a budget, measured: per-block evaluation of a uniformly trained network against a network trained with
per-block γ sampling, per-block against uniform γ at equal MACs, and a timed search under a latency budget.

    PYTHONPATH=. python benchmarks/deploy_search.py --run uniform=runs/fashion-uniform \\
        --run per_block=runs/fashion-perblock --budget macs=1G --candidates 81 --markdown reports/deploy-fashion.md

For every run and every budget it calls ``raymeta.stages.deploy.deploy`` (validation chooses; ``report_test`` also scores
the uniform γ and the validation front on the test split, for reporting only) and then prints, per run:
the validation front by MACs; for every uniform γ, the best per-block configuration (by validation) with at most
its MACs and the test accuracies of both, with the noise (2 standard errors of the difference of two binomial
accuracies on the test set); and the search's candidate count and wall time. ``--latency RUN=BUDGET_MS`` adds a
deployment under a latency budget and prints the exported network's measured latency.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd

from raymeta.config.schema import DeployConfig
from raymeta.io.progress import Progress
from raymeta.io.results import read_table
from raymeta.stages.deploy import deploy, parse_budget
from raymeta.stages.deploy_report import front


def noise(p: float, n: int) -> float:
    """Two standard errors of the difference of two independent binomial accuracies near p on n images."""
    return 2 * math.sqrt(2 * p * (1 - p) / n)


def label(row, blocks) -> str:
    return "(" + ", ".join(f"{row[f'gamma.{b}']:g}" for b in blocks) + ")"


def analyse(name: str, table: pd.DataFrame, test_images: int, lines: list[str]) -> dict:
    blocks = [c[len("gamma.") :] for c in table.columns if c.startswith("gamma.")]
    key = [f"gamma.{b}" for b in blocks]
    validation = table[table["split"] == "validation"].drop_duplicates(key)
    test = table[table["split"] == "test"].drop_duplicates(key).set_index(key)["accuracy"]
    line = front(validation, "macs")
    lines += [
        f"\n### {name}: validation front by MACs ({len(validation)} candidates; γ per block in the order "
        f"{', '.join(blocks)})\n",
        "| kind | γ per block | MACs | latency est. (ms) | validation acc | test acc |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for _, row in line.iterrows():
        t = test.get(tuple(row[key]), float("nan"))
        lines.append(
            f"| {row['search_kind']} | {label(row, blocks)} | {row['macs'] / 1e6:.3f}M | "
            f"{row['latency_ms']:.3f} | {100 * row['accuracy']:.2f} | {100 * t:.2f} |"
        )
    uniform = validation[validation["search_kind"] == "uniform"].sort_values("macs")
    lines += [
        f"\n### {name}: per-block against uniform γ at equal MACs (test: reported, never used to choose; noise: "
        f"2 SE of two independent binomial accuracies, conservative: see the paired table)\n",
        "| uniform γ | MACs | uniform val | best per-block ≤ MACs (by val) | its MACs | its val | uniform test | "
        "per-block test | test Δ | noise (2 SE) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    deltas = []
    for _, u in uniform.iterrows():
        within = validation[validation["macs"] <= u["macs"]]
        best = within.sort_values(["accuracy", "macs"], ascending=[False, True], kind="stable").iloc[0]
        tu, tb = test.get(tuple(u[key]), float("nan")), test.get(tuple(best[key]), float("nan"))
        delta, band = tb - tu, noise(tu, test_images)
        deltas.append((u["gamma"], delta, band, best["search_kind"]))
        lines.append(
            f"| {u['gamma']:g} | {u['macs'] / 1e6:.3f}M | {100 * u['accuracy']:.2f} | {label(best, blocks)} "
            f"({best['search_kind']}) | {best['macs'] / 1e6:.3f}M | {100 * best['accuracy']:.2f} | "
            f"{100 * tu:.2f} | {100 * tb:.2f} | {100 * delta:+.2f} | ±{100 * band:.2f} |"
        )
    return {"validation": validation, "front": line, "deltas": deltas, "test": test}


def compare(first, second, lines: list[str]) -> None:
    """The two runs' fronts at the same MAC levels (each uniform γ of the first): the configuration each run's
    validation front offers within that many MACs, and its test accuracy."""
    (name_a, a), (name_b, b) = first, second
    lines += [
        f"\n## {name_a} against {name_b}: the best configuration by validation within each MAC level\n",
        f"| MAC level | {name_a}: config (kind) | val | test | {name_b}: config (kind) | val | test | "
        f"test Δ ({name_b} − {name_a}) | noise (2 SE) |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    levels = sorted(a["validation"].loc[a["validation"]["search_kind"] == "uniform", "macs"])
    for level in levels:
        picks = []
        for result in (a, b):
            validation = result["validation"]
            blocks = [c[len("gamma.") :] for c in validation.columns if c.startswith("gamma.")]
            within = validation[validation["macs"] <= level]
            best = within.sort_values(["accuracy", "macs"], ascending=[False, True], kind="stable").iloc[0]
            picks.append((best, blocks, result["test"].get(tuple(best[[f"gamma.{x}" for x in blocks]]), float("nan"))))
        (pa, blocks_a, ta), (pb, blocks_b, tb) = picks
        lines.append(
            f"| {level / 1e6:.3f}M | {label(pa, blocks_a)} ({pa['search_kind']}) | {100 * pa['accuracy']:.2f} | "
            f"{100 * ta:.2f} | {label(pb, blocks_b)} ({pb['search_kind']}) | {100 * pb['accuracy']:.2f} | "
            f"{100 * tb:.2f} | {100 * (tb - ta):+.2f} | ±{100 * noise(ta, 10_000):.2f} |"
        )


def correct_vector(net, gamma, data, settings):
    """Per test image: does the network export would write at ``gamma`` classify it correctly?"""
    import torch

    from raymeta.stages.export import materialize_like_evaluation

    model = materialize_like_evaluation(net, gamma, **settings)
    with torch.no_grad():
        return torch.cat(
            [
                model.forward_head(model.forward_blocks(features, start=data.start)).argmax(1) == labels
                for features, labels in data.batches(500)
            ]
        )


def paired(name: str, run_dir: str, result: dict, lines: list[str]) -> None:
    """McNemar-style paired noise for each (uniform γ, best per-block within its MACs) pair that differ: on the
    same test images, 2·√(b + c)/n, b and c the images only one of the two classifies correctly."""
    from raymeta.io.files import RunPaths
    from raymeta.stages.deploy import evaluation_data
    from raymeta.stages.export import generation_settings
    from raymeta.stages.networks import load_trained
    from raymeta.stages.runtime import load_data

    net, config, _ = load_trained(RunPaths(run_dir).train_checkpoint)
    net.eval()
    data = evaluation_data(net, load_data(config, augment=False), "test", 500)
    settings = generation_settings(config, None)
    names = net.block_names()
    validation = result["validation"]
    lines += [
        f"\n### {name}: paired test noise (the same 10 000 images)\n",
        "| uniform γ | best per-block ≤ MACs (by val) | test Δ | only per-block right | only uniform right | "
        "paired noise (2 SE) | beyond the noise? |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for gamma, _, _, kind in result["deltas"]:
        if kind == "uniform":
            continue
        u = validation[(validation["search_kind"] == "uniform") & (validation["gamma"] == gamma)].iloc[0]
        within = validation[validation["macs"] <= u["macs"]]
        best = within.sort_values(["accuracy", "macs"], ascending=[False, True], kind="stable").iloc[0]
        vector = tuple(float(best[f"gamma.{block}"]) for block in names)
        a, b = correct_vector(net, float(gamma), data, settings), correct_vector(net, vector, data, settings)
        only_b, only_a, n = int((b & ~a).sum()), int((a & ~b).sum()), len(a)
        delta, band = (only_b - only_a) / n, 2 * math.sqrt(only_a + only_b) / n
        lines.append(
            f"| {gamma:g} | {tuple(vector)} | {100 * delta:+.2f} | {only_b} | {only_a} | ±{100 * band:.2f} | "
            f"{'yes' if abs(delta) > band else 'no'} |"
        )
    lines.append(f"\n(γ vectors in train.blocks order: {', '.join(names)}.)")


def budget_levels(runs: dict, budgets: list[str], candidates: int, lines: list[str], progress) -> None:
    """For several budgets and every run: a deployment each (validation chooses), then per budget the chosen
    configuration and the best uniform γ within the same budget (by validation), both scored on test, with the
    paired noise of their difference."""
    from raymeta.io.files import RunPaths
    from raymeta.stages.deploy import evaluation_data
    from raymeta.stages.export import generation_settings
    from raymeta.stages.networks import load_trained
    from raymeta.stages.runtime import load_data

    lines += [
        "\n## Deployments at several budgets (evolutionary search where the per-block space is larger than "
        "the candidate budget)\n",
        "| run | budget | candidates | search s | chosen γ (train.blocks order) | its MACs | val | test | best uniform "
        "γ ≤ budget | its MACs | val | test | test Δ | paired noise (2 SE) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for name, run_dir in runs.items():
        net, config, _ = load_trained(RunPaths(run_dir).train_checkpoint)
        net.eval()
        data = evaluation_data(net, load_data(config, augment=False), "test", 500)
        settings = generation_settings(config, None)
        names = net.block_names()
        for text in budgets:
            kind, value = text.split("=", 1)
            budget = parse_budget(kind, value)
            out = Path(run_dir) / "deploy" / f"levels-{budget.tag()}"
            if (out / "deploy.json").is_file():
                summary = json.loads((out / "deploy.json").read_text())
            else:
                summary = deploy(
                    run_dir,
                    DeployConfig(
                        **{f"max_{budget.kind}": budget.limit}, candidates=candidates, output=str(out), onnx=False
                    ),
                    progress,
                )
            table = read_table(out / "pareto.parquet")
            validation = table[table["split"] == "validation"]
            chosen = validation[validation["search_status"] == "chosen"].iloc[0]
            uniform = validation[
                (validation["search_kind"] == "uniform") & (validation["search_status"] != "over budget")
            ]
            best_u = uniform.sort_values(["accuracy", "macs"], ascending=[False, True], kind="stable").iloc[0]
            vector = tuple(float(chosen[f"gamma.{block}"]) for block in names)
            a = correct_vector(net, float(best_u["gamma"]), data, settings)
            b = correct_vector(net, vector, data, settings)
            only_b, only_a, n = int((b & ~a).sum()), int((a & ~b).sum()), len(a)
            delta, band = (only_b - only_a) / n, 2 * math.sqrt(only_a + only_b) / n
            lines.append(
                f"| {name} | {budget.describe()} | {summary['candidates']} | {summary['search_seconds']:.0f} | "
                f"{vector} | {chosen['macs'] / 1e6:.2f}M | {100 * chosen['accuracy']:.2f} | "
                f"{100 * float(b.float().mean()):.2f} | {best_u['gamma']:g} | {best_u['macs'] / 1e6:.2f}M | "
                f"{100 * best_u['accuracy']:.2f} | {100 * float(a.float().mean()):.2f} | {100 * delta:+.2f} | "
                f"±{100 * band:.2f} |"
            )
        notes.append(f"{name}: blocks {', '.join(names)}")
    lines.append(f"\n(γ vectors in train.blocks order: {'; '.join(notes)}.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (a trained run), repeatable")
    parser.add_argument(
        "--budget",
        default="macs=1G",
        help="KIND=VALUE of the front searches (default macs=1G: every configuration of the grid fits)",
    )
    parser.add_argument("--candidates", type=int, default=81, help="candidates of each front search")
    parser.add_argument(
        "--latency",
        action="append",
        default=[],
        help="NAME=BUDGET_MS: a deployment of that run under a latency budget, timed",
    )
    parser.add_argument("--latency-candidates", type=int, default=60)
    parser.add_argument("--markdown", help="also write the tables here")
    parser.add_argument(
        "--budgets",
        help="KIND=VALUE,…: instead of the front searches, one deployment per budget "
        "and run (e.g. macs=22M,macs=25M), compared with the best uniform γ",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="also the paired (McNemar) noise of each per-block against uniform comparison, from per-image predictions",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="analyse the front searches an earlier call wrote (RUN/deploy/front) instead of searching again",
    )
    args = parser.parse_args()
    progress = Progress()
    runs = dict(item.split("=", 1) for item in args.run)
    kind, value = args.budget.split("=", 1)
    budget = parse_budget(kind, value)
    what = f"deployments at {args.budgets}" if args.budgets else f"front searches: budget {budget.describe()}"
    lines = [
        f"# Deploy to a budget on Fashion-MNIST\n\n{what}, at most {args.candidates} candidates each, "
        f"validation chooses, test reported.\n"
    ]
    results = {}
    for name, run_dir in ({} if args.budgets else runs).items():
        out = Path(run_dir) / "deploy" / "front"
        start = time.perf_counter()
        if args.reuse and (out / "deploy.json").is_file():
            summary, wall = json.loads((out / "deploy.json").read_text()), float("nan")
        else:
            summary = deploy(
                run_dir,
                DeployConfig(
                    **{f"max_{budget.kind}": budget.limit},
                    candidates=args.candidates,
                    report_test=True,
                    output=str(out),
                    onnx=False,
                ),
                progress,
            )
            wall = time.perf_counter() - start
            (out / "wall_s.txt").write_text(f"{wall:.1f}\n")
        if (out / "wall_s.txt").is_file():
            wall = float((out / "wall_s.txt").read_text())
        table = read_table(out / "pareto.parquet")
        test_images = 10_000
        lines.append(
            f"\n## {name} ({run_dir})\n\nSearch: {summary['candidates']} candidates in "
            f"{summary['search_seconds']:.1f} s ({summary['search']}); the whole command {wall:.1f} s "
            f"(latency table, data, search, export, test scoring of {len(table[table['split'] == 'test'])} "
            f"configurations)."
        )
        results[name] = analyse(name, table, test_images, lines)
        if args.paired:
            paired(name, run_dir, results[name], lines)
    if len(results) == 2:
        compare(*results.items(), lines)
    if args.budgets:
        budget_levels(runs, args.budgets.split(","), args.candidates, lines, progress)
    for item in args.latency:
        name, limit = item.split("=", 1)
        run_dir = runs.get(name, name)
        start = time.perf_counter()
        summary = deploy(run_dir, DeployConfig(max_latency_ms=limit, candidates=args.latency_candidates), progress)
        wall = time.perf_counter() - start
        lines += [
            f"\n## Latency budget {limit} ms on {run_dir}\n",
            f"- {summary['candidates']} candidates searched in {summary['search_seconds']:.1f} s "
            f"({summary['search']}); the whole command (latency table, search, export, test) {wall:.1f} s",
            f"- chosen γ {summary['block_gammas']}: validation acc {100 * summary['validation_accuracy']:.2f}%, "
            f"test {100 * summary['test_accuracy']:.2f}%, {summary['macs'] / 1e6:.3f}M MACs",
            f"- latency: estimated {summary['estimated_latency_ms']:.3f} ms, exported network measured "
            f"{summary['measured_latency_ms']:.3f} ms on {summary['latency_device']} (batch "
            f"{summary['batch_size']}, {summary['threads']} thread): "
            + ("within" if summary["measured_latency_ms"] <= float(limit) else "OVER")
            + " the budget",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
