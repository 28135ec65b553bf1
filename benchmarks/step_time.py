"""Training step time against the floor: per phase, time, FLOPs and the fraction of this machine's matmul peak.

Measured in one run:
  * the matmul peak, GFLOP/s of [8192, H] @ [H, H] at the INRs' widths, in fp32 and bf16;
  * per setting and precision, the library's own step (``accumulate_gradients`` + ``apply_update``), then the
    same work phase by phase: generation (INR forward), target forward, target backward (down to the generated
    weights), INR backward, optimiser. FLOPs are counted by torch's FlopCounterMode on the same work (matrix
    products and convolutions; elementwise work is not counted), so "% of peak" is the achieved fraction of the
    matmul peak and the "floor" is the step's FLOPs at that peak.

Settings (random weights and data: time does not depend on their values):
  neumeta   NeuMeta's: ResNet-56, the last block only, M = 1, batch 64, INR 256×8, F = 16, --method neumeta
  paper256  the paper's: jobs/cifar100_resnet56.yaml (stage-3 blocks 1–7, M = 4, batch 128, F = 32) with INR 256×8
  paper512  the same with the job's INR 512×8
  full      the experiments' full network: jobs/fashion_mnist_bench.yaml (ResNet-20 on Fashion-MNIST, M = 4,
            batch 64, INR 64×3, F = 8) with train.blocks=[full] (every block but the first of each stage and the
            last: five blocks)
  full56    the full ResNet-56 (23 blocks), INR 256×8, else paper256
  tiny      jobs/debug.yaml's network (ResNet-14 8/8/8, INR 32×2): seconds, to check the script runs (not by default)

    python benchmarks/step_time.py [--steps 3] [--threads 2] [--device cpu] [--settings neumeta paper256 ...]
                                   [--precision fp32 bf16] [--compile off on]

It also prints the projected time of jobs/cifar100_resnet56.yaml at the paper256/paper512 step time: its
steps (7 stages × 50 epochs × steps per epoch) × the step with all seven blocks active, an upper bound (earlier
stages generate fewer blocks), against the paper's 16.2 GPU-hours.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from raymeta.config.loading import load_config, method_overrides
from raymeta.method.models import Architecture, ResNet
from raymeta.method.objective import autocast, configuration_loss
from raymeta.method.sampling import noise_generator, reference_width, sample_gammas
from raymeta.method.schedule import apply_update, build_optimizer
from raymeta.stages.collective import WorkUnit, accumulate_gradients
from raymeta.stages.networks import build_network
from raymeta.stages.train import objective_of

ROOT = Path(__file__).resolve().parent.parent
PAPER_JOB = ROOT / "jobs" / "cifar100_resnet56.yaml"
BENCH_JOB = ROOT / "jobs" / "fashion_mnist_bench.yaml"
PAPER_GPU_HOURS = 16.2  # HTTY: the recipe on ResNet-56 / CIFAR-100
CIFAR_TRAIN = 50_000

SETTINGS = {
    "neumeta": (
        None,
        [
            "model.depth=56",
            "model.widths=[16,32,64]",
            "data.name=cifar100",
            *method_overrides("neumeta"),
            "train.blocks=[last]",
            "train.configs_per_step=1",
            "data.batch_size=64",
            "inr.hidden_width=256",
            "inr.depth=8",
            "inr.fourier_frequencies=16",
        ],
    ),
    "paper256": (PAPER_JOB, ["inr.hidden_width=256"]),
    "paper512": (PAPER_JOB, []),
    "full56": (PAPER_JOB, ["inr.hidden_width=256", "train.blocks=[full]"]),
    "full": (BENCH_JOB, ["train.blocks=[full]"]),
    "tiny": (ROOT / "jobs" / "debug.yaml", []),
}
DEFAULT_SETTINGS = ["neumeta", "full", "paper256", "paper512", "full56"]
INPUTS = {"cifar100": (3, 32, 100), "fashion_mnist": (1, 28, 10), "synthetic": (3, 32, 100)}
"""(channels, image size, classes) of each setting's data."""
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device, seconds: float = 1.0, least: int = 3, best: bool = False) -> float:
    """Median (``best``: least) seconds of ``function()``: at least ``least`` calls after a warm-up, until ``seconds``
    have passed."""
    function()
    synchronize(device)
    times = []
    started = time.perf_counter()
    while len(times) < least or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return min(times) if best else statistics.median(times)


def matmul_peak(hidden: int, dtype: torch.dtype, device: torch.device, rows: int = 8192) -> float:
    """GFLOP/s of bias + [rows, H] @ [H, H], the shape of every hidden layer of an INR: the best of a second's calls
    of the faster way."""
    a = torch.randn(rows, hidden, device=device).to(dtype)
    b = torch.randn(hidden, hidden, device=device).to(dtype)
    bias = torch.randn(hidden, device=device).to(dtype)
    # the faster of addmm (what the INR layers call) and F.linear: in bf16 on an AVX2 CPU only linear takes
    # oneDNN's path, 10× the others'
    calls = [lambda: torch.addmm(bias, a, b), lambda: F.linear(a, b, bias)]
    return max(2 * rows * hidden * hidden / timed(call, device, best=True) / 1e9 for call in calls)


def setting_config(name: str, precision: str, device: torch.device, compiled: bool):
    path, overrides = SETTINGS[name]
    return load_config(
        str(path) if path else None,
        [*overrides, f"train.precision={precision}", f"device={device.type}", f"train.compile={str(compiled).lower()}"],
    )


def make_network(config, device: torch.device):
    torch.manual_seed(0)
    model = config.model
    channels, _, classes = INPUTS[config.data.name]
    prior = ResNet(Architecture(model.depth, tuple(model.widths), channels, classes), batchnorm=False).eval()
    net = build_network(config, prior).to(device)
    net.train()
    if config.train.alpha_scaling:
        with torch.no_grad():
            net.alphas.fill_(0.5)  # a live residual branch, as after the first steps
    # the distillation teacher runs in every step (laid out as training lays it out)
    teacher = net.layout_teacher(copy.deepcopy(prior).to(device)) if config.train.lambda_distill > 0 else None
    return net, teacher


def measure(name: str, precision: str, steps: int, device: torch.device, compiled: bool) -> dict:
    config = setting_config(name, precision, device, compiled)
    net, teacher = make_network(config, device)
    train = config.train
    optimizer = build_optimizer(
        net, lr=train.lr, weight_decay=train.weight_decay, alpha_lr=train.alpha_lr, head_lr=train.head_lr
    )
    M, batch = config.train.configs_per_step, config.data.batch_size
    channels, size, classes = INPUTS[config.data.name]
    images = torch.randn(M, batch, channels, size, size, device=device)
    labels = torch.randint(0, classes, (M, batch), device=device)
    batches = [(images[m], labels[m]) for m in range(M)]
    width = reference_width(net)

    def gammas(step: int) -> list[float]:
        return sample_gammas(0, step, M, config.train.gamma_pool, width)

    def whole_step(step: int) -> None:
        units = [WorkUnit(k, g) for k, g in enumerate(gammas(step))]
        accumulate_gradients(net, step, units, batches, M, objective_of(config), config.seed, device, teacher)
        apply_update(net, optimizer, config.train.clip_value)

    started = time.perf_counter()
    whole_step(0)  # warm-up: coordinate caches, allocator (and the compile, with --compile)
    synchronize(device)
    first_step = time.perf_counter() - started
    totals = []
    for step in range(1, steps + 1):
        synchronize(device)
        t0 = time.perf_counter()
        whole_step(step)
        synchronize(device)
        totals.append(time.perf_counter() - t0)

    objective = objective_of(config)

    def phases(step: int, clock) -> None:
        """One step split in phases, each ended by ``clock(phase)``: ``accumulate_gradients``' work (each
        configuration generated, its loss on the frozen prefix shared with the teacher), with the backward cut at
        the generated tensors to time the target's and the INR's apart, then the update."""
        for index, gamma in enumerate(gammas(step)):
            with autocast(config.train.precision, device):
                weights = net.generate(
                    gamma, noise=objective.coordinate_noise, generator=noise_generator(config.seed, step, index)
                )
            clock("generate")
            leaf = {k: v.detach().requires_grad_(True) for k, v in weights.items()}
            images, labels = batches[index]
            with autocast(config.train.precision, device):
                prefix = net.frozen_prefix(images)
                targets = None if teacher is None else net.teacher_logits(teacher, prefix).float()
            loss, _ = configuration_loss(
                net, gamma, images, labels, objective, None, teacher_logits=targets, weights=leaf, prefix=prefix
            )
            clock("target_forward")
            (loss / M).backward()
            clock("target_backward")
            torch.autograd.backward(list(weights.values()), [leaf[k].grad for k in weights])
            clock("inr_backward")
        apply_update(net, optimizer, config.train.clip_value)
        clock("optimizer")

    spent = {key: [] for key in ("generate", "target_forward", "target_backward", "inr_backward", "optimizer")}
    for step in range(1, steps + 1):
        this = dict.fromkeys(spent, 0.0)
        synchronize(device)
        last = [time.perf_counter()]

        def clock(phase: str, this: dict = this, last: list = last) -> None:
            synchronize(device)
            now = time.perf_counter()
            this[phase] += now - last[0]
            last[0] = now

        phases(step, clock)
        for key, value in this.items():
            spent[key].append(value)

    # FLOPs of the same phases (one step: the γ of step 1), counted phase by phase.
    flops = dict.fromkeys(spent, 0)
    counter = FlopCounterMode(display=False)
    with counter:
        before = [0]

        def count(phase: str) -> None:
            total = counter.get_total_flops()
            flops[phase] += total - before[0]
            before[0] = total

        phases(1, count)
    optimizer.zero_grad(set_to_none=True)
    return {
        "config": config,
        "step_s": statistics.median(totals),
        "first_step_s": first_step,
        "phase_s": {k: statistics.median(v) for k, v in spent.items()},
        "flops": flops,
        "generated": sum(w.numel() for w in net.generate(0.0).values()),
    }


def projected_hours(config, step_s: float) -> tuple[int, float]:
    """Steps of ``config``'s run on CIFAR-100 and their hours at ``step_s`` each."""
    train_images = CIFAR_TRAIN - round(config.data.validation_fraction * CIFAR_TRAIN)
    steps_per_epoch = train_images // config.data.batch_size // config.train.configs_per_step
    stages = len(config.train.blocks) if not config.train.incremental else 7  # stage3.block1-7: seven stages
    steps = stages * config.train.epochs_per_stage * steps_per_epoch
    return steps, steps * step_s / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=list(DTYPES))
    parser.add_argument(
        "--compile",
        nargs="+",
        default=["off"],
        choices=["off", "on"],
        help="train.compile: off, on, or both (the INR banks compiled; the first step pays the compile)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {name}, median of {args.steps} steps")
    hiddens = sorted({setting_config(s, "fp32", device, False).inr.hidden_width for s in args.settings})
    peaks = {(h, p): matmul_peak(h, DTYPES[p], device) for h in hiddens for p in args.precision}
    for (hidden, precision), value in peaks.items():
        print(f"matmul peak [8192, {hidden}] @ [{hidden}, {hidden}] {precision}: {value:.1f} GFLOP/s")
    for setting in args.settings:
        for precision, compiled in [(p, c == "on") for p in args.precision for c in args.compile]:
            result = measure(setting, precision, args.steps, device, compiled)
            config = result["config"]
            peak = peaks[(config.inr.hidden_width, precision)]
            total_flops = sum(result["flops"].values())
            floor_s = total_flops / peak / 1e9
            print(
                f"\n{setting} {precision}{' compiled' if compiled else ''}: step {1000 * result['step_s']:.0f} ms (first step "
                f"{result['first_step_s']:.1f} s), {total_flops / 1e9:.1f} GFLOP, floor at the matmul peak "
                f"{1000 * floor_s:.0f} ms (step / floor {result['step_s'] / floor_s:.2f}); "
                f"{result['generated']} generated elements at γ=0"
            )
            print(f"  {'phase':16s} {'ms':>8s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'% peak':>7s}")
            for phase, seconds in result["phase_s"].items():
                gflop = result["flops"][phase] / 1e9
                rate = gflop / seconds if seconds > 0 else 0.0
                print(f"  {phase:16s} {1000 * seconds:8.1f} {gflop:8.2f} {rate:8.1f} {100 * rate / peak:6.0f}%")
            # The production step's time the phases do not account for (loss terms, noise draws, bookkeeping):
            # negative when the library's step does the phases' work faster than the phase-by-phase replay.
            outside = result["step_s"] - sum(result["phase_s"].values())
            print(f"  {'outside phases':16s} {1000 * outside:8.1f}   (the step minus the phases' sum)")
            if setting in ("paper256", "paper512"):
                steps, hours = projected_hours(config, result["step_s"])
                print(
                    f"  projected jobs/cifar100_resnet56.yaml (INR {config.inr.hidden_width}): {steps} steps × "
                    f"{result['step_s']:.2f} s = {hours:.1f} h (paper: {PAPER_GPU_HOURS} GPU-hours), an upper bound"
                )


if __name__ == "__main__":
    main()
