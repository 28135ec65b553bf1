"""What a Tune trial costs beyond its training: a sweep's trials against the same runs trained directly.

    .venv/bin/python benchmarks/sweep_overhead.py                       # digits ResNet-20, 3 trials
    .venv/bin/python benchmarks/sweep_overhead.py --trials 4 --epochs 4

Every trial trains the quickstart config for ``--epochs`` epochs of one stage from the same smoothed prior;
the trials differ only in λ_rec. The sweep runs them one at a time (FIFO, no early stopping) on an embedded
Ray with 1 worker × all cores each. For each trial the figure is its wall time in Tune (``time_total_s``:
Train start-up, epochs, reports, evaluation) against the seconds its epochs took (recorded by the run); the
same configuration trained directly by ``raymeta train --workers 0`` gives the baseline epoch time. Ratios
come from one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymeta.config.loading import load_config  # noqa: E402
from raymeta.config.schema import SweepConfig  # noqa: E402
from raymeta.drivers.space import load_space  # noqa: E402
from raymeta.drivers.sweep import ensure_prior, run_sweep  # noqa: E402
from raymeta.io.artifacts import MetamorphicCheckpoint  # noqa: E402
from raymeta.io.files import RunPaths  # noqa: E402
from raymeta.io.progress import Progress
from raymeta.stages.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/quickstart.yaml")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--run-root", default="runs/bench_sweep")
    args = parser.parse_args()

    root = Path(args.run_root).resolve()
    shutil.rmtree(root / "sweeps", ignore_errors=True)
    overrides = [
        f"run_dir={root}",
        f"train.epochs_per_stage={args.epochs}",
        "train.blocks=[stage3.block1]",
        f"threads={args.threads}",
    ]
    quiet = Progress(stream=open(os.devnull, "w"))
    base = load_config(args.config, overrides)
    ensure_prior(base, quiet)

    direct = root / "direct"
    shutil.rmtree(direct, ignore_errors=True)
    direct.mkdir(parents=True)
    for name in ("prior.pt", "smoothed.pt"):
        shutil.copy(root / name, direct / name)
    start = time.time()
    checkpoint = train(load_config(args.config, [*overrides, f"run_dir={direct}"]), progress=quiet)
    direct_wall = time.time() - start
    direct_epochs = sum(r.seconds for r in MetamorphicCheckpoint.load(checkpoint).state.history)

    space_file = root / "space.yaml"
    space_file.write_text(
        f"search: random\nnum_samples: {args.trials}\nscheduler: fifo\n"
        "params:\n  train.lambda_rec: {loguniform: [0.1, 10.0]}\n"
    )
    options = SweepConfig(
        workers=1,
        cpus_per_worker=args.threads - 0.5 if args.threads > 1 else 0.5,
        trial_cpus=0.5,
        max_concurrent_trials=1,
        verbose=0,
    )
    start = time.time()
    summary = run_sweep(load_space(space_file, base), dataclasses.replace(base, sweep=options), quiet)
    sweep_wall = time.time() - start

    print(f"config {args.config}  {args.epochs} epochs of stage3.block1, {args.threads} threads")
    print(f"direct (raymeta train --workers 0): wall {direct_wall:.1f} s, epochs {direct_epochs:.1f} s")
    print(f"{'trial':<14} {'Tune wall s':>11} {'epochs s':>9} {'overhead s':>10} {'epochs vs direct':>16}")
    overheads = []
    for trial in summary["trials"]:
        folder = summary["sweep_dir"]
        reports = [json.loads(line) for line in (folder / "tune" / trial["trial_id"] / "result.json").open()]
        wall = reports[-1]["time_total_s"]
        history = MetamorphicCheckpoint.load(
            RunPaths(str(folder / "trials" / trial["trial_id"])).train_checkpoint
        ).state.history
        epochs = sum(r.seconds for r in history)
        overheads.append(wall - epochs)
        print(
            f"{trial['trial_id']:<14} {wall:11.1f} {epochs:9.1f} {wall - epochs:10.1f} {epochs / direct_epochs:15.2f}×"
        )
    print(
        f"median overhead per trial {statistics.median(overheads):.1f} s; whole sweep {sweep_wall:.1f} s "
        f"(Ray start-up, prior check, {args.trials} trials, evaluation of each, report)"
    )


if __name__ == "__main__":
    main()
