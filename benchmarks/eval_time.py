"""Time of the evaluate stage at many γ: one γ at a time against ``evaluate_gammas``, in one run.

The quickstart network (``jobs/quickstart.yaml``: digits, ResNet-20 16/32/64, every block but the first of each stage
and the last metamorphic, INR 64 × 3, F = 8) at its 9 γ with K = 10 noisy samples, on the 359 digits test images.
The INR weights are random (untrained): timing does not depend on their values.

    python benchmarks/eval_time.py [--repeats 3] [--threads 2] [--config jobs/quickstart.yaml] [group.key=value …]

"γ by γ" generates each γ's weights on its own (``MetamorphicNetwork.generate``, K samples in one call), then
runs the whole loader through the whole network. "batched" is ``evaluate_gammas``: the INR passes of all γ
shared (``generate_many``) and the frozen prefix run once per batch of images for every γ. Each is the median
of ``--repeats`` interleaved runs after one warm-up run each; the script also checks that both give the same
rows. (Until 2026-12 the γ-by-γ side was the padded generation of before ``generate_many``, kept here as a copy
reaching into the hypernetwork's internals; benchmarks/RESULTS.md keeps its figures.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from raymeta.config.loading import load_config
from raymeta.io.data import make_loader
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet
from raymeta.method.scoring import accuracy_and_loss
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import build_network
from raymeta.stages.runtime import load_data


def evaluate_gamma_by_gamma(
    net: MetamorphicNetwork, loader, gammas: list[float], samples: int, noise: float, seed: int
) -> list[tuple[float, float]]:
    """(accuracy, loss) per γ, one γ at a time: its weights generated alone, the whole network per batch."""
    scores = []
    with torch.no_grad():
        for gamma in gammas:
            generator = torch.Generator().manual_seed(seed)
            weights = net.generate(gamma, noise=noise if samples > 1 else 0.0, samples=samples, generator=generator)
            scores.append(accuracy_and_loss(lambda x, weights=weights: net(x, weights), loader, "cpu"))
    return scores


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--config", default="jobs/quickstart.yaml", help="the job whose network and test split are timed"
    )
    parser.add_argument("overrides", nargs="*", help="group.key=value overrides of that job")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, args.overrides)
    bundle = load_data(config, augment=False)
    info = bundle.info
    torch.manual_seed(0)
    prior = ResNet(
        Architecture(config.model.depth, tuple(config.model.widths), info.in_channels, info.num_classes),
        batchnorm=False,
    ).eval()
    net = build_network(config, prior).eval()
    with torch.no_grad():
        net.alphas.fill_(0.5)  # live residual branches, as after training
    loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    gammas, samples, noise, seed = config.eval.gammas, config.eval.samples, config.inr.coordinate_noise, config.seed

    def by_gamma() -> list[tuple[float, float]]:
        return evaluate_gamma_by_gamma(net, loader, gammas, samples, noise, seed)

    def batched_rows() -> list[tuple[float, float]]:
        rows = evaluate_gammas(
            net, loader, "cpu", gammas, samples=samples, noise=noise, seed=seed, image_size=info.image_size
        )
        return [(row["accuracy"], row["loss"]) for row in rows]

    reference, batched = by_gamma(), batched_rows()  # warm-up: coordinate caches, allocator
    same_accuracy = all(a == b for (a, _), (b, _) in zip(reference, batched, strict=True))
    loss_error = max(abs(b - a) / abs(a) for (_, a), (_, b) in zip(reference, batched, strict=True))
    times = {"by_gamma": [], "batched": []}
    for _ in range(args.repeats):
        times["by_gamma"].append(seconds(by_gamma))
        times["batched"].append(seconds(batched_rows))
    by_gamma_ms, batched_ms = (1000 * statistics.median(times[k]) for k in ("by_gamma", "batched"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(gammas)} γ × K = {samples}, "
        f"{len(bundle.test)} test images, median of {args.repeats}"
    )
    print(
        f"rows equal: accuracy {'identical' if same_accuracy else 'DIFFERENT'}, "
        f"largest relative loss difference {loss_error:.1e}"
    )
    print(f"γ by γ:          {by_gamma_ms:8.0f} ms   runs: {', '.join(f'{1000 * t:.0f}' for t in times['by_gamma'])}")
    print(f"batched:         {batched_ms:8.0f} ms   runs: {', '.join(f'{1000 * t:.0f}' for t in times['batched'])}")
    print(f"speed-up: {by_gamma_ms / batched_ms:.2f}×")


if __name__ == "__main__":
    main()
