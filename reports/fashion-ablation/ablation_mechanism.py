"""Are the generated blocks of each ablation trial in use? Per trial: its final α per block, and its test accuracy
at γ = 0 (K = 1) with the generated blocks, with them switched off (α forced to 0: the trained network without its
metamorphic residual branches), the smoothed prior's own accuracy, and the relative RMS error of the INRs'
weights generated at γ = 0 (noise-free) against the prior's BN-folded weights, per tensor kind (1.0 is as far
as generating zeros).

    python reports/fashion-ablation/ablation_mechanism.py runs/fashion-ablation/seed0/sweeps/ablation

A trial whose accuracy does not drop when its blocks are switched off has switched them off itself: its rows
compare fine-tuned heads, not metamorphic blocks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from raymeta.io.artifacts import SmoothedCheckpoint
from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.results import read_tables
from raymeta.method import health
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained, prior_network
from raymeta.stages.runtime import load_data


def main(sweep_dir: str) -> None:
    sweep = Path(sweep_dir)
    rows = read_tables([str(sweep / "results")])
    variants = rows.groupby("trial_id")["method"].first()
    print(
        "| variant | trial | final α per block | acc γ=0, blocks in | acc, blocks off (α=0) | prior "
        "| rel. RMS error at γ=0: kernels | biases |"
    )
    print("|---|---|---|---|---|---|---|---|")
    prior_accuracy = None
    for trial_id, variant in sorted(variants.items(), key=lambda item: item[1]):
        checkpoint = RunPaths(str(sweep / "trials" / trial_id)).train_checkpoint
        if not checkpoint.is_file():
            continue
        net, config, _ = load_trained(checkpoint)
        bundle = load_data(config, augment=False)
        loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
        image_size = bundle.info.image_size
        with_blocks = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=image_size)[
            0
        ]["accuracy"]
        alphas = net.alphas.tolist()
        kernels, biases = reconstruction_errors(net)
        with torch.no_grad():
            net.alphas.zero_()
        without = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=image_size)[0][
            "accuracy"
        ]
        if prior_accuracy is None:
            smoothed = SmoothedCheckpoint.load(RunPaths(str(sweep / "trials" / trial_id)).smoothed)
            prior_accuracy = accuracy_and_loss(prior_network(smoothed), loader, "cpu")[0]
        alpha_text = " ".join(f"{a:.2f}" for a in alphas) + ("" if config.train.alpha_scaling else " (fixed)")
        print(
            f"| {variant} | {trial_id} | {alpha_text} | {100 * with_blocks:.2f} | {100 * without:.2f} | "
            f"{100 * prior_accuracy:.2f} | {kernels} | {biases} |",
            flush=True,
        )


@torch.no_grad()
def reconstruction_errors(net) -> tuple[str, str]:
    """Relative RMS error ‖W_gen − W_prior‖ / ‖W_prior‖ of each generated tensor at γ = 0, kernels and biases."""
    errors = health.reconstruction_errors(net)

    def join(kind: str) -> str:
        return " ".join(f"{e:.2f}" for name, e in errors.items() if name.endswith(kind))

    return join(".weight"), join(".bias")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python reports/fashion-ablation/ablation_mechanism.py SWEEP_DIR")
    main(sys.argv[1])
