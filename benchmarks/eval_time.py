"""Time of the evaluate stage at many γ: today's γ-by-γ path against ``evaluate_gammas``, in one run.

The quickstart network (``jobs/quickstart.yaml``: digits, ResNet-20 16/32/64, every block but the first of each stage
and the last metamorphic, INR 64 × 3, F = 8) at its 9 γ with K = 10 noisy samples, on the 359 digits test images.
The INR weights are random (untrained): timing does not depend on their values.

    python benchmarks/eval_time.py [--repeats 3] [--threads 2]

"γ by γ" is the evaluation as it was before this issue (kept here as ``old_generate``): per γ, the INRs on every
layer's coordinates padded to the largest layer's, K samples in one pass, then the whole loader through the network.
"batched" is ``evaluate_gammas``: unpadded, cache-sized INR passes shared by all γ, and the frozen prefix run once
per batch of images for every γ. Each is the median of ``--repeats`` interleaved runs after one warm-up run each;
the script also checks that both give the same rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from raymeta.config import load_config
from raymeta.io.data import make_loader
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import build_network
from raymeta.stages.runtime import load_data


def old_bank_forward(bank, x: torch.Tensor) -> torch.Tensor:
    """``INRBank.forward`` as it was: batched products over the stacked MLPs, the residual update in two passes."""
    n = x.shape[0]
    h = torch.baddbmm(bank.b_in[:n], x, bank.w_in[:n])
    for j in range(bank.depth - 1):
        h = h + bank.s_res[:n, j, None, None] * F.elu(torch.baddbmm(bank.b_res[:n, j], h, bank.w_res[:n, j]))
    return torch.baddbmm(bank.b_out[:n], h, bank.w_out[:n])


def old_generate(net: MetamorphicNetwork, gamma: float, samples: int, noise: float,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``MetamorphicNetwork.generate`` as it was: every layer's coordinates padded to the largest layer's, the K
    samples of each bank in one pass (of at most ``max_rows`` rows), then the prior base added."""
    hyper = net.hyper
    hidden = net.hidden_widths(gamma)
    samples = samples if noise > 0 else 1
    layouts = hyper._layouts(hidden, torch.device("cpu"))
    references = hyper.reference_shapes()
    draws = hyper._draw_noise(layouts, samples, noise, generator)
    generated: dict[str, torch.Tensor] = {}
    for bank, layout, bank_draws in zip(hyper.banks(), layouts, draws):
        n, width = layout.raw.shape[:2]
        chunk, total = max(1, hyper.max_rows // (n * width)), None
        for first in range(0, samples, chunk):
            count = min(chunk, samples - first)
            perturbation = None if bank_draws is None else bank_draws[first: first + count]
            out = old_bank_forward(bank, hyper._features(layout.raw, references, perturbation, count))
            out = out.reshape(n, count, width, bank.out_dim).sum(dim=1)
            total = out if total is None else total + out
        hyper._name_outputs(layout, total / samples, generated)
    if net.base == "prior":
        for name, value in net.prior_base(hidden).items():
            generated[name] = generated[name] + value
    return generated


def evaluate_gamma_by_gamma(net: MetamorphicNetwork, loader, gammas: list[float], samples: int, noise: float,
                            seed: int) -> list[tuple[float, float]]:
    """(accuracy, loss) per γ the way evaluation ran before this issue: one γ at a time, padded generation, the
    whole network per batch."""
    scores = []
    with torch.no_grad():
        for gamma in gammas:
            generator = torch.Generator().manual_seed(seed)
            weights = old_generate(net, gamma, samples, noise if samples > 1 else 0.0, generator)
            scores.append(accuracy_and_loss(lambda x: net(x, weights), loader, "cpu"))
    return scores


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("jobs/quickstart.yaml", [])
    bundle = load_data(config, augment=False)
    info = bundle.info
    torch.manual_seed(0)
    prior = ResNet(Architecture(config.model.depth, tuple(config.model.widths), info.in_channels, info.num_classes),
                   batchnorm=False).eval()
    net = build_network(config, prior).eval()
    with torch.no_grad():
        net.alphas.fill_(0.5)  # live residual branches, as after training
    loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    gammas, samples, noise, seed = config.eval.gammas, config.eval.samples, config.inr.coordinate_noise, config.seed

    def old() -> list[tuple[float, float]]:
        return evaluate_gamma_by_gamma(net, loader, gammas, samples, noise, seed)

    def new() -> list[tuple[float, float]]:
        rows = evaluate_gammas(net, loader, "cpu", gammas, samples=samples, noise=noise, seed=seed,
                               image_size=info.image_size)
        return [(row["accuracy"], row["loss"]) for row in rows]

    reference, batched = old(), new()  # warm-up: coordinate caches, allocator
    same_accuracy = all(a == b for (a, _), (b, _) in zip(reference, batched, strict=True))
    loss_error = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(reference, batched))
    times = {"old": [], "new": []}
    for _ in range(args.repeats):
        times["old"].append(seconds(old))
        times["new"].append(seconds(new))
    old_ms, new_ms = (1000 * statistics.median(times[k]) for k in ("old", "new"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(gammas)} γ × K = {samples}, "
          f"{len(bundle.test)} test images, median of {args.repeats}")
    print(f"rows equal: accuracy {'identical' if same_accuracy else 'DIFFERENT'}, "
          f"largest relative loss difference {loss_error:.1e}")
    print(f"γ by γ (before): {old_ms:8.0f} ms   runs: {', '.join(f'{1000 * t:.0f}' for t in times['old'])}")
    print(f"batched (now):   {new_ms:8.0f} ms   runs: {', '.join(f'{1000 * t:.0f}' for t in times['new'])}")
    print(f"speed-up: {old_ms / new_ms:.2f}×")


if __name__ == "__main__":
    main()
