"""Why the papers' method does not metamorphose, checked on one of its trained runs: are its generated blocks
the prior's, do they carry the network, does the task gradient reach the INRs?

    python reports/fashion-ablation/lead_check.py runs/fashion-ablation/seed0/sweeps/ablation/trials/80fd9_00001

Prints α per block, the relative RMS error of every generated tensor at γ = 0 against the prior, test accuracy
at γ = 0 as trained, with every α forced to 0 (the skip network) and forced to 1 (the generated blocks at full
strength), and the norm of the task loss's gradient on one training batch for α and for the INRs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.method import health
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data


def main(run: Path) -> None:
    net, config, _ = load_trained(RunPaths(run).train_checkpoint)
    bundle = load_data(config, augment=False)
    loader = make_loader(bundle.test, 500, shuffle=False)
    size = bundle.info.image_size

    def accuracy() -> float:
        rows = evaluate_gammas(net, loader, "cpu", [0.0], samples=1, noise=0.0, seed=0, image_size=size)
        return rows[0]["accuracy"]

    trained = net.alphas.detach().clone()
    print(
        f"run {run}: method settings base={config.inr.base} alpha_init={config.train.alpha_init} "
        f"reconstruction={config.train.reconstruction}"
    )
    print("α per block:", {k: round(v, 3) for k, v in health.block_alphas(net).items()})
    print("relative RMS error at γ=0:", {k: round(v, 3) for k, v in health.reconstruction_errors(net).items()})
    print(f"test accuracy at γ=0: as trained {100 * accuracy():.2f}", end="")
    for value in (0.0, 1.0):
        net.alphas.data.fill_(value)
        print(f", every α = {value:g}: {100 * accuracy():.2f}", end="")
    print()
    net.alphas.data.copy_(trained)
    net.train()
    images, labels = next(iter(make_loader(bundle.train, 128, shuffle=True, seed=0, epoch=0)))
    loss = F.cross_entropy(net(images, net.generate(0.0)), labels)
    inr = list(net.hyper.parameters())
    grads = torch.autograd.grad(loss, [net.alphas, *inr], allow_unused=True)
    inr_norm = torch.sqrt(sum((g.pow(2).sum() for g in grads[1:] if g is not None), torch.tensor(0.0)))
    print(f"task-loss gradient on one batch at γ=0: ‖∂L/∂α‖ {grads[0].norm():.3e}, ‖∂L/∂INR‖ {inr_norm:.3e}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python reports/fashion-ablation/lead_check.py RUN_DIR")
    main(Path(sys.argv[1]))
