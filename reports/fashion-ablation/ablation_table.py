"""Print the Table 1 ablation as a markdown table: one row per variant, mean ± std over the sweeps given.

    python reports/fashion-ablation/ablation_table.py reports/fashion-ablation/seed0 reports/fashion-ablation/seed1

Reads the sweeps' result tables (``raymeta.io.results.read_tables``): the final rows on the test split give the
accuracy columns (mean over the seen γ and over the unseen γ, K = eval.samples), the final rows on the
validation split the column a sweep selects by; training seconds are each trial's own (prior not counted).
Δ is the variant's mean minus the recipe's, per sweep, then averaged.
"""

from __future__ import annotations

import sys

import pandas as pd

from raymeta.io.results import read_tables

ORDER = [
    "neumeta",
    "recipe",
    "recipe without incremental",
    "recipe without alpha_scaling",
    "recipe without grad_accumulation",
    "recipe without inr_init",
    "recipe without separate_bias_inr",
]
LABELS = {
    "neumeta": "NeuMeta (all off, M = 1)",
    "recipe": "recipe (all on)",
    "recipe without incremental": "− incremental",
    "recipe without alpha_scaling": "− α scaling",
    "recipe without grad_accumulation": "− gradient accumulation (M = 1)",
    "recipe without inr_init": "− INR initialisation",
    "recipe without separate_bias_inr": "− separate bias INRs",
}


def per_sweep(folder: str) -> pd.DataFrame:
    """One row per variant of one sweep: seen/unseen test accuracy, seen validation accuracy, training time."""
    rows = read_tables([folder])
    final = rows[rows["phase"] == "final"]
    out = {}
    for variant, group in final.groupby("method"):
        test, validation = group[group["split"] == "test"], group[group["split"] == "validation"]
        out[variant] = {
            "seen": 100 * test[test["seen"]]["accuracy"].mean(),
            "unseen": 100 * test[~test["seen"]]["accuracy"].mean(),
            "validation": 100 * validation[validation["seen"]]["accuracy"].mean(),
            "train_s": test["train_time_s"].iloc[0],
            "by_gamma": {g: 100 * a for g, a in zip(test["gamma"], test["accuracy"], strict=True)},
        }
    return pd.DataFrame(out).T


def main(folders: list[str]) -> None:
    sweeps = [per_sweep(folder) for folder in folders]
    names = ", ".join(folders)
    print(f"Sweeps: {names}. Test accuracy (%), mean ± std over the {len(sweeps)} sweeps.\n")
    gammas = sorted(sweeps[0]["by_gamma"].iloc[0])
    header = [
        "variant",
        "seen γ",
        "Δ seen",
        "unseen γ",
        "Δ unseen",
        "validation (seen)",
        *[f"γ={g:g}" for g in gammas],
        "training s",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in ORDER:
        if not all(variant in s.index for s in sweeps):
            continue

        def stat(key: str, delta: bool = False, variant: str = variant) -> str:
            values = pd.Series(
                [s.loc[variant, key] - (s.loc["recipe", key] if delta else 0) for s in sweeps], dtype=float
            )
            sign = "+" if delta else ""
            return f"{values.mean():{sign}.2f} ± {values.std(ddof=0):.2f}"

        by_gamma = [pd.Series([s.loc[variant, "by_gamma"][g] for s in sweeps]).mean() for g in gammas]
        seconds = " / ".join(f"{s.loc[variant, 'train_s']:.0f}" for s in sweeps)
        cells = [
            LABELS.get(variant, variant),
            stat("seen"),
            "—" if variant == "recipe" else stat("seen", True),
            stat("unseen"),
            "—" if variant == "recipe" else stat("unseen", True),
            stat("validation"),
            *[f"{a:.2f}" for a in by_gamma],
            seconds,
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python reports/fashion-ablation/ablation_table.py SWEEP_RESULTS_FOLDER…")
    main(sys.argv[1:])
