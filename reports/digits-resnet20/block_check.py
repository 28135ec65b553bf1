"""Is every generated block in use? For a trained run, the accuracy and loss with each metamorphic block removed
in turn (its α set to 0: the block becomes the identity), at γ = 0 and at the pool's high end, on the test split.

    python reports/digits-resnet20/block_check.py runs/digits/metamorphic
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.method import health
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data


@torch.no_grad()
def main(run: Path) -> None:
    net, config, _ = load_trained(RunPaths(run).train_checkpoint)
    bundle = load_data(config, augment=False)
    loader = make_loader(bundle.test, 500, shuffle=False)
    gammas = sorted({0.0, config.train.gamma_pool[1]})

    def rows() -> dict[float, tuple[float, float]]:
        found = evaluate_gammas(
            net, loader, "cpu", gammas, samples=1, noise=0.0, seed=0, image_size=bundle.info.image_size
        )
        return {r["gamma"]: (r["accuracy"], r["loss"]) for r in found}

    def text(values: dict[float, tuple[float, float]]) -> str:
        return " | ".join(f"{100 * a:.2f} ({loss:.4f})" for a, loss in values.values())

    print(f"{run} ({len(bundle.test)} test images): accuracy % (loss) at γ = {', '.join(f'{g:g}' for g in gammas)}\n")
    print("| removed | α | " + " | ".join(f"γ={g:g}" for g in gammas) + " |\n|---|---|" + "---|" * len(gammas))
    print("| none | – | " + text(rows()) + " |")
    alphas = net.alphas.detach().clone()
    for index, (name, alpha) in enumerate(health.block_alphas(net).items()):
        net.alphas.data[index] = 0.0
        print(f"| {name} | {alpha:.2f} | " + text(rows()) + " |", flush=True)
        net.alphas.data.copy_(alphas)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python reports/digits-resnet20/block_check.py RUN_DIR")
    main(Path(sys.argv[1]))
