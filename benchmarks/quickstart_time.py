"""Where the quickstart's time goes, and Ray's share of it: the README's command, run as a user runs it.

    .venv/bin/python benchmarks/quickstart_time.py [--run-dir /tmp/qs] [group.key=value ...]

Runs ``raymeta run --config jobs/quickstart.yaml`` from a fresh run folder in a subprocess (the driver, an
embedded local Ray, two Ray Train workers), splits the wall time by the driver's progress lines into its stages,
and takes the workers' training loop (every epoch's training and monitoring) from the checkpoint's epoch records.
Ray's share is the train stage less that loop: Ray's start, the worker group and its set-up, the per-epoch
reports with their checkpoints, the shut-down.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raymeta.io.artifacts import MetamorphicCheckpoint  # noqa: E402
from raymeta.io.files import RunPaths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("pretrain", "smooth", "train", "evaluate", "report")
DRIVER_LINE = re.compile(r"^\[\s*([0-9.]+)s\] (\w+):")
"""A progress line of the driver (the workers' lines come prefixed by Ray with the worker's name)."""


def stage_times(lines: list[str], total: float) -> dict[str, float]:
    """Seconds of each stage: from its first progress line to the next stage's first line (the first from 0)."""
    firsts: dict[str, float] = {}
    for line in lines:
        match = DRIVER_LINE.match(line)
        if match and match.group(2) in STAGES:
            firsts.setdefault(match.group(2), float(match.group(1)))
    missing = [stage for stage in STAGES if stage not in firsts]
    if missing:
        raise SystemExit(f"no progress line of stage(s) {', '.join(missing)} in the run's output")
    starts = [0.0] + [firsts[stage] for stage in STAGES[1:]] + [total]
    return {stage: starts[i + 1] - starts[i] for i, stage in enumerate(STAGES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/quickstart.yaml")
    parser.add_argument("--run-dir", help="run folder, emptied first (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra group.key=value overrides")
    args = parser.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="quickstart-time-"))
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "raymeta", "run", "--config", args.config, "--run-dir", str(run_dir)]
    print("$", " ".join(command[2:] + args.overrides), flush=True)
    started = time.perf_counter()
    done = subprocess.run([*command, *args.overrides], cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"the run failed (exit {done.returncode})")
    stages = stage_times(done.stdout.splitlines(), total)
    history = MetamorphicCheckpoint.load(RunPaths(str(run_dir)).train_checkpoint).state.history
    loop = sum(record.seconds for record in history)
    evaluate = stages["evaluate"] + stages["report"]
    print(f"end to end {total:.1f} s: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stages.items()))
    print(f"the workers' training loop: {loop:.1f} s over {len(history)} epochs")
    print(
        f"Ray's share (end to end − pretrain − smooth − the training loop − evaluate − report): "
        f"{total - stages['pretrain'] - stages['smooth'] - loop - evaluate:.1f} s "
        f"(the train stage less its loop: {stages['train'] - loop:.1f} s)"
    )
    if not args.run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
