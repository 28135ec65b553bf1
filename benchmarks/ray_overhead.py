"""Time per training epoch: the single-process loop against Ray Train with 1 and 2 workers, on the same work.

    .venv/bin/python benchmarks/ray_overhead.py                       # Fashion-MNIST ResNet-20 (needs the idx files)
    .venv/bin/python benchmarks/ray_overhead.py --config jobs/debug.yaml --limit-train 0

Every driver trains the same configuration from the same smoothed prior for ``--epochs`` epochs. The figure
that matters is the steady-state epoch period (end of one epoch to the end of the next: steps, monitor
evaluation, checkpoint and, on Ray, the report), taken from the epoch timestamps the run records; the
start-up cost (Ray, the worker group, the process group) is the rest of the wall time. The single process
and the one Ray worker both use every core (``--threads``); two workers use one each. Ratios come from one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymeta.config.loading import load_config  # noqa: E402
from raymeta.config.schema import RayConfig  # noqa: E402
from raymeta.drivers.distributed import QUIET_RAY, train_distributed  # noqa: E402
from raymeta.io.artifacts import MetamorphicCheckpoint  # noqa: E402
from raymeta.io.files import RunPaths  # noqa: E402
from raymeta.io.progress import Progress
from raymeta.stages.pretrain import pretrain  # noqa: E402
from raymeta.stages.smooth import smooth  # noqa: E402
from raymeta.stages.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/fashion_mnist_resnet20.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit-train", type=int, default=4096, help="training images (0: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--run-root", default="runs/bench_ray")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        choices=[0, 1, 2],
        help="the drivers to time: 0 the single process, 1 and 2 Ray Train workers (default all)",
    )
    parser.add_argument("overrides", nargs="*", help="extra group.key=value overrides")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs {args.epochs}: give at least 2 (the epoch period is the time between two epochs' ends)")

    root = Path(args.run_root).resolve()
    overrides = [
        f"train.epochs_per_stage={args.epochs}",
        "train.blocks=[stage3.block1]",
        "train.warmup_epochs=0",
        "train.incremental=false",
        "pretrain.epochs=1",
        *args.overrides,
    ]
    if args.limit_train:
        overrides += [f"data.limit_train={args.limit_train}", f"data.limit_test={max(512, args.limit_train // 8)}"]
    quiet = Progress(stream=open(os.devnull, "w"))
    prior = load_config(args.config, [*overrides, f"run_dir={root / 'prior'}", f"threads={args.threads}"])
    pretrain(prior, quiet)
    smooth(prior, quiet)

    drivers = [
        ("single process", 0, args.threads),
        ("Ray, 1 worker", 1, args.threads),
        ("Ray, 2 workers", 2, max(1, args.threads // 2)),
    ]
    drivers = [driver for driver in drivers if driver[1] in args.workers]
    print(f"config {args.config}  overrides {' '.join(overrides)}")
    print(f"{'driver':<16} {'threads/worker':>14} {'wall s':>8} {'start-up s':>10} {'epoch s':>9} {'vs single':>10}")
    baseline = None
    phases = []
    for label, workers, threads in drivers:
        run_dir = root / label.replace(" ", "_").replace(",", "")
        shutil.rmtree(run_dir, ignore_errors=True)
        paths = RunPaths(str(run_dir))
        paths.root.mkdir(parents=True)
        for name in ("prior", "smoothed"):
            shutil.copy(getattr(RunPaths(str(root / "prior")), name), getattr(paths, name))
        config = load_config(args.config, [*overrides, f"run_dir={run_dir}", f"threads={threads}"])
        start = time.time()
        if workers == 0:
            checkpoint = train(config, progress=quiet)
            finished = time.time()
        else:
            import ray

            # Ray started here as train_distributed would start it (it then joins this one), to time it apart
            for key, value in QUIET_RAY.items():
                os.environ.setdefault(key, value)
            ray.init(address="local", configure_logging=False)
            fit_start = time.time()
            options = RayConfig(workers=workers, cpus_per_worker=args.threads / workers)
            checkpoint = train_distributed(dataclasses.replace(config, ray=options), progress=quiet)
            finished = time.time()
            ray.shutdown()
        wall = time.time() - start
        history = MetamorphicCheckpoint.load(checkpoint).state.history
        ends = [record.finished for record in history]
        periods = [later - earlier for earlier, later in zip(ends, ends[1:], strict=False)]
        epoch = statistics.median(periods)
        startup = wall - epoch * len(history)
        baseline = baseline or epoch
        print(
            f"{label:<16} {threads:>14} {wall:8.1f} {startup:10.1f} {epoch:9.2f} {epoch / baseline:9.2f}×", flush=True
        )
        if workers:
            loop = sum(record.seconds for record in history)  # the epochs' training and monitoring, in the workers
            first = history[0].finished - history[0].seconds
            phases.append(
                (
                    label,
                    fit_start - start,  # ray.init
                    first - fit_start,  # worker group, imports, process group, data, set-up
                    (ends[-1] - first) - loop,  # per-epoch checkpoint save and report, all epochs
                    finished - ends[-1],  # the last report, the worker group's shut-down, the final checkpoint copy
                    time.time() - finished,  # ray.shutdown
                    wall - loop,
                )
            )
    if phases:
        print("\nRay's fixed cost, where it goes (s): the wall time less the workers' epochs (training + monitoring)")
        print(
            f"{'driver':<16} {'ray.init':>9} {'to 1st step':>12} {'reports':>8} {'shut-down':>10} {'ray.shutdown':>13} {'all':>6}"
        )
        for label, init, first, reports, down, shutdown, total in phases:
            print(f"{label:<16} {init:9.1f} {first:12.1f} {reports:8.1f} {down:10.1f} {shutdown:13.1f} {total:6.1f}")


if __name__ == "__main__":
    main()
