"""Milliseconds per training step, with the split between weight generation, the target network and the optimiser.

Two settings (random weights and data: timing does not depend on their values):
  paper    ResNet-56 16/32/64 on 32×32×3, blocks 1–7 of stage 3 metamorphic (all seven active: the last,
           most expensive stage), M = 4 configurations per step, batch 128, INR H = 256, D = 8, F = 16.
  neumeta  the original NeuMeta setting: the last block only, one configuration per step, batch 64,
           H = 256, D = 8, F = 16 (the float32-safe cap; raymeta computes features in float64).

    python benchmarks/step_time.py [--steps 3] [--threads 2] [--device cpu] [--settings paper neumeta]

Each step runs the library's own ``accumulate_gradients`` + ``apply_update``; the split comes from the
same work timed phase by phase (generation forward, target forward, backward through both, optimiser).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from raymeta.config import load_config
from raymeta.method.models import Architecture, ResNet
from raymeta.stages.networks import build_network
from raymeta.stages.train import WorkUnit, accumulate_gradients, apply_update, build_optimizer, noise_generator, reference_width, sample_gammas

SETTINGS = {
    "paper": ["train.blocks=[stage3.block1-7]", "train.configs_per_step=4", "data.batch_size=128",
              "inr.hidden_width=256", "inr.depth=8", "inr.fourier_frequencies=16"],
    "neumeta": ["train.blocks=[last]", "train.configs_per_step=1", "data.batch_size=64", "inr.hidden_width=256",
                "inr.depth=8", "inr.fourier_frequencies=16", "train.incremental=false",
                "train.alpha_scaling=false", "train.inr_init=false", "train.separate_bias_inr=false",
                "train.finetune_head=false"],
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(setting: str, steps: int, device: torch.device) -> dict[str, float]:
    config = load_config(None, ["model.depth=56", "model.widths=[16,32,64]", *SETTINGS[setting]])
    torch.manual_seed(0)
    prior = ResNet(Architecture(56, (16, 32, 64), 3, 100), batchnorm=False).eval()
    net = build_network(config, prior).to(device)
    if config.train.alpha_scaling:
        with torch.no_grad():
            net.alphas.fill_(0.5)  # a live residual branch, as after the first steps
    optimizer = build_optimizer(net, config)
    M, batch = config.train.configs_per_step, config.data.batch_size
    images = torch.randn(M, batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 100, (M, batch), device=device)
    batches = [(images[m], labels[m]) for m in range(M)]

    def whole_step(step: int) -> None:
        gammas = sample_gammas(0, step, M, config.train.gamma_pool, reference_width(net))
        accumulate_gradients(net, step, [WorkUnit(k, g) for k, g in enumerate(gammas)], batches, M, config, device)
        apply_update(net, optimizer, config.train.clip_value)

    whole_step(0)  # warm-up: coordinate caches, allocator
    totals = []
    for step in range(1, steps + 1):
        synchronize(device)
        start = time.perf_counter()
        whole_step(step)
        synchronize(device)
        totals.append(time.perf_counter() - start)

    phases = {"generate": [], "target_forward": [], "backward": [], "optimizer": []}
    for step in range(1, steps + 1):
        gammas = sample_gammas(0, step, M, config.train.gamma_pool, reference_width(net))
        spent = dict.fromkeys(phases, 0.0)
        for index, gamma in enumerate(gammas):
            generator = noise_generator(0, step, index)
            synchronize(device); t0 = time.perf_counter()
            weights = net.generate(gamma, noise=config.inr.coordinate_noise, generator=generator)
            synchronize(device); t1 = time.perf_counter()
            logits = net(batches[index][0], weights)
            loss = F.cross_entropy(logits, batches[index][1]) + 1e-4 * sum(w.norm() for w in weights.values())
            synchronize(device); t2 = time.perf_counter()
            (loss / M).backward()
            synchronize(device); t3 = time.perf_counter()
            spent["generate"] += t1 - t0
            spent["target_forward"] += t2 - t1
            spent["backward"] += t3 - t2
        synchronize(device); t4 = time.perf_counter()
        apply_update(net, optimizer, config.train.clip_value)
        synchronize(device)
        spent["optimizer"] = time.perf_counter() - t4
        for key, value in spent.items():
            phases[key].append(value)

    # backward through the generation alone, once per configuration: the INR's share of "backward"
    inr_backward = []
    for step in range(steps):
        weights = net.generate(0.25, noise=config.inr.coordinate_noise, generator=noise_generator(0, step, 0))
        surrogate = sum((w * torch.randn_like(w)).sum() for w in weights.values())
        synchronize(device); t0 = time.perf_counter()
        surrogate.backward()
        synchronize(device)
        inr_backward.append((time.perf_counter() - t0) * M)
    optimizer.zero_grad(set_to_none=True)
    result = {"step_ms": 1000 * statistics.median(totals)}
    result.update({f"{k}_ms": 1000 * statistics.median(v) for k, v in phases.items()})
    result["inr_backward_est_ms"] = 1000 * statistics.median(inr_backward)
    result["generated_elements"] = sum(w.numel() for w in net.generate(0.0).values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"median of {args.steps} steps")
    for setting in args.settings:
        result = measure(setting, args.steps, device)
        split = "  ".join(f"{k} {v:.0f}" for k, v in result.items() if k.endswith("ms") and k != "step_ms")
        print(f"{setting:8s} step {result['step_ms']:.0f} ms  ({split})  "
              f"generated elements at γ=0: {result['generated_elements']}", flush=True)


if __name__ == "__main__":
    main()
