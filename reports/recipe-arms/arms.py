"""Train the arms of issue 22's table: the papers' recipe (``--method recipe``) on one metamorphic block
(stage3.block1) of the Fashion-MNIST benchmark's ResNet-20, one shared prior, each arm changing one thing.

    python reports/recipe-arms/arms.py RUNS [--config jobs/fashion_mnist_bench.yaml] [--only A,E] [--restart]
                                       [--table FILE] [--smoke] [key=value …]

RUNS/prior holds the shared prior (pretrained and smoothed once); RUNS/<arm> each arm's run, its prior copied
in. An arm whose training checkpoint is finished is skipped, an unfinished one continues where it stopped, so
the script can be run again after an interruption; a checkpoint of other settings (the recipe preset changed,
say) is refused, and ``--restart`` trains those arms afresh. Trailing ``key=value`` overrides apply to every arm, after
the arm's own. ``--table FILE`` then writes the arms' table (``reports/recipe-arms/arms_table.py RUNS``, which
prints it on its own).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from raymeta.config.loading import load_config, method_overrides
from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.files import RunPaths, atomic_write_text
from raymeta.io.progress import Progress
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth
from raymeta.stages.train import train

BLOCK = ["train.blocks=[stage3.block1]"]
"""Every arm: one metamorphic block, so that what the recipe does to a block is not mixed with stage order."""

HTTY_RATES = [
    "train.lr=8e-4",
    "train.alpha_lr=1e-4",
    "train.head_lr=7e-5",
    "train.warmup_epochs=0",
    "inr.input_activation=elu",
    "inr.residual_scale_init=0.1",
    "train.ema_decay=0",
    "train.epochs_per_stage=30",
]

ARMS: dict[str, tuple[str, list[str]]] = {
    "A": ("as is", []),
    "B": ("train.lambda_reg=0", ["train.lambda_reg=0"]),
    "D": ("train.alpha_init=0.1", ["train.alpha_init=0.1"]),
    "E": (
        "HTTY's rates (lr 8e-4, α 1e-4, head 7e-5), no warm-up, 30 epochs (ELU input, residual scales 0.1, no EMA)",
        HTTY_RATES,
    ),
    "INR256x8": ("INR 256 × 8 (the paper's size class)", ["inr.hidden_width=256", "inr.depth=8"]),
}
"""Arm → (what it changes, its overrides over ``--method recipe`` and :data:`BLOCK`). E's ELU input, residual scales
0.1 and no EMA are what ``--method recipe`` sets itself today (presets.RECIPE_OPTIMISATION); the arm keeps them so
that it means the same if the preset changes."""

SMOKE_CONFIG = "jobs/debug.yaml"
SMOKE = ["pretrain.epochs=1", "train.epochs_per_stage=1", "train.steps_per_epoch=1", "data.limit_test=64"]
"""``--smoke``: every arm for one step on the debug job's synthetic data and tiny ResNet (the scripts' test)."""


def arm_config(config_path: str, run_dir: Path, arm: str, extra: list[str]):
    """The arm's configuration: the job, ``--method recipe``, one block, the arm's change, then ``extra``."""
    return load_config(config_path, [*method_overrides("recipe"), *BLOCK, *ARMS[arm][1], *extra, f"run_dir={run_dir}"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="where the shared prior and each arm's run go")
    parser.add_argument("--config", default="jobs/fashion_mnist_bench.yaml", help="the job (data, model, prior)")
    parser.add_argument("--only", default=",".join(ARMS), help=f"comma-separated arms to train (of {', '.join(ARMS)})")
    parser.add_argument(
        "--restart", action="store_true", help="train the arms asked for afresh, over a checkpoint of other settings"
    )
    parser.add_argument("--table", type=Path, help="then write arms_table.py's table of RUNS to this file")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_CONFIG}, one step per arm: {' '.join(SMOKE)}")
    parser.add_argument("overrides", nargs="*", help="key=value overrides applied to every arm after its own")
    args = parser.parse_intermixed_args(argv)
    if args.smoke:
        args.config, args.overrides = SMOKE_CONFIG, [*SMOKE, *args.overrides]
    arms = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in arms if name not in ARMS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: not an arm; the arms are {', '.join(ARMS)}")
    for arm in ARMS:  # every arm's settings checked before the first step: a typo fails now, not an hour in
        arm_config(args.config, args.runs / arm, arm, args.overrides)
    progress = Progress()
    shared = RunPaths(args.runs / "prior")
    prior_config = arm_config(args.config, args.runs / "prior", "A", args.overrides)
    shared.root.mkdir(parents=True, exist_ok=True)
    pretrain(prior_config, progress)  # reuses a finished prior of the same configuration
    if not shared.smoothed.is_file():
        smooth(prior_config, progress)
    for arm in arms:
        run = args.runs / arm
        paths, config = RunPaths(run), arm_config(args.config, run, arm, args.overrides)
        if paths.train_checkpoint.is_file():
            # finished with these settings: skipped; another configuration's (the recipe preset changed, say) is
            # refused by train() below, naming --restart, rather than measured as if it were this arm
            checkpoint = MetamorphicCheckpoint.load(paths.train_checkpoint)
            if checkpoint.done and checkpoint.config_hash == config.hash() and not args.restart:
                progress(f"arm {arm}: finished already, skipped")
                continue
        paths.root.mkdir(parents=True, exist_ok=True)
        for name in ("prior", "smoothed"):
            if not getattr(paths, name).is_file():
                shutil.copy(getattr(shared, name), getattr(paths, name))
        progress(f"arm {arm}: {ARMS[arm][0]}")
        train(config, progress=progress, resume=False if args.restart else None)
    if args.table is not None:  # in this process: the table script's imports are paid once
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from arms_table import table

        args.table.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.table, table(args.runs))
        progress(f"arms: table {args.table}")


if __name__ == "__main__":
    main()
