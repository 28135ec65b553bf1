"""``raymeta``: one command, a verb per stage of the pipeline.

    raymeta pretrain  --config jobs/quickstart.yaml            train the prior (γ = 0, with BatchNorm)
    raymeta smooth    --config jobs/quickstart.yaml            fold BatchNorm, permute channels
    raymeta train     --config jobs/quickstart.yaml            train the INRs
    raymeta evaluate  --config jobs/quickstart.yaml            accuracy at every γ → Parquet
    raymeta run       --config jobs/quickstart.yaml            all four in order
    raymeta validate  --config jobs/quickstart.yaml            load, validate and print the configuration

Any ``group.key=value`` argument overrides the YAML, e.g. ``train.epochs_per_stage=2 data.name=synthetic``.
pretrain, train and run continue (or reuse) checkpoints of the same configuration; ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from raymeta.checkpoint import load_checkpoint, save_checkpoint
from raymeta.config import NEUMETA_SWITCHES, Config, load_config, save_config
from raymeta.errors import CheckpointError, ConfigError, RaymetaError
from raymeta.runtime import Progress, RunPaths


def _config(args: argparse.Namespace) -> Config:
    overrides = []
    if getattr(args, "method", None) == "neumeta":
        overrides += [f"train.{key}={str(value).lower()}" for key, value in NEUMETA_SWITCHES.items()]
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return load_config(args.config, overrides + list(args.overrides))


def method_name(config: Config) -> str:
    neumeta = all(getattr(config.train, key) == value for key, value in NEUMETA_SWITCHES.items())
    return "neumeta" if neumeta else "metamorphic"


def smooth(config: Config, progress: Progress) -> Path:
    """Fold the prior's BatchNorm into its convs and (if enabled) permute channels; save smoothed.pt."""
    from raymeta.models import fold_batchnorm
    from raymeta.smoothing import smooth_network, total_variation
    from raymeta.train import load_prior_network

    paths = RunPaths(config.run_dir)
    payload = load_checkpoint(paths.prior, kind="prior", required=("arch", "state_dict"))
    if not payload.get("done"):
        raise CheckpointError(f"the prior {paths.prior} is unfinished (epoch {payload['state']['epoch']} of "
                              f"{payload['config']['pretrain']['epochs']}): run raymeta pretrain to finish it")
    prior = load_prior_network({**payload, "batchnorm": True})
    folded = fold_batchnorm(prior)
    if config.smooth.enabled:
        smoothed, report = smooth_network(folded, restarts=config.smooth.restarts, seed=config.seed)
        before, after = report.total_variation_before, report.total_variation_after
        progress(f"smooth: {report.groups} channel groups; total variation {before:.1f} → {after:.1f} "
                 f"({100 * (1 - after / before):.1f}% lower)")
    else:
        smoothed, before = folded, total_variation(folded)
        after = before
        progress("smooth: permutation disabled (smooth.enabled=false); BatchNorm folded only")
    save_checkpoint({"kind": "smoothed", "config": config.to_dict(), "arch": payload["arch"],
                     "dataset": payload["dataset"], "state_dict": smoothed.state_dict(), "batchnorm": False,
                     "total_variation_before": before, "total_variation_after": after,
                     "prior_metrics": payload.get("metrics", {})}, paths.smoothed)
    progress(f"smooth: saved {paths.smoothed}")
    return paths.smoothed


def evaluate(config: Config, progress: Progress, checkpoint: str | None = None) -> Path:
    """Evaluate a trained metamorphic network at every γ of ``eval.gammas``; write a Parquet table."""
    from raymeta.data import make_loader
    from raymeta.evaluate import evaluate_gammas, format_rows, result_frame, write_table
    from raymeta.runtime import load_data, select_device
    from raymeta.train import load_trained

    paths = RunPaths(config.run_dir)
    net, trained_config, payload = load_trained(checkpoint or paths.train_checkpoint)
    if not payload.get("done"):
        progress("evaluate: note — the checkpoint is from an unfinished run")
    device = select_device(config)
    net.to(device)
    bundle = load_data(trained_config, augment=False)
    loader = make_loader(bundle.test, config.data.eval_batch_size, shuffle=False)
    samples = config.eval.samples
    progress(f"evaluate: {len(config.eval.gammas)} γ values, K={samples} sample(s), {len(bundle.test)} test images")
    rows = evaluate_gammas(net, loader, device, config.eval.gammas, samples=samples,
                           noise=trained_config.inr.coordinate_noise, seed=config.seed,
                           image_size=bundle.info.image_size)
    state = payload["state"]
    frame = result_frame(rows, trained_config, method=method_name(trained_config), run_id=Path(config.run_dir).name,
                         dataset=bundle.info.name, stage=state["stage"], epoch=len(state["history"]),
                         train_time_s=sum(record["seconds"] for record in state["history"]))
    path = write_table(frame, paths.results)
    print(format_rows(frame), flush=True)
    progress(f"evaluate: wrote {path}")
    return path


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (see jobs/); defaults apply without one")
    parser.add_argument("--run-dir", help="override run_dir: where this run's files go")
    parser.add_argument("overrides", nargs="*", metavar="group.key=value", help="config overrides")


def _add_distributed(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed training (Ray Train)")
    group.add_argument("--workers", type=int, default=None,
                       help="Ray Train workers (default: as many as the cluster allows, at most M = "
                            "train.configs_per_step); 0 trains in this process without Ray")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (NCCL when > 0)")
    group.add_argument("--cpus-per-worker", type=float, default=None,
                       help="CPUs per worker (default: the cluster's CPUs shared evenly)")
    group.add_argument("--address", default=None,
                       help="join this Ray cluster (default: RAY_ADDRESS if set, else an embedded local Ray)")
    group.add_argument("--storage-path", default=None, help="Ray Train storage (default: RUN_DIR/ray)")
    group.add_argument("--max-failures", type=int, default=3,
                       help="worker-group failures to recover from, each from the last checkpoint (default 3)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raymeta", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("smooth", "fold BatchNorm and permute channels"),
                            ("validate", "load, validate and print the configuration")]:
        _add_common(sub.add_parser(name, help=help_text))
    for name, help_text in [("pretrain", "train the prior"), ("train", "train the hypernetwork"),
                            ("run", "pretrain, smooth, train, evaluate")]:
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        if name != "pretrain":
            p.add_argument("--method", choices=["recipe", "neumeta"], default="recipe",
                           help="neumeta: every component of the recipe switched off (the original baseline)")
            _add_distributed(p)
        group = p.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_true",
                           help="require a checkpoint to continue from (default: continue one of the same config)")
        group.add_argument("--restart", action="store_true", help="ignore existing checkpoints and start over")
    p = sub.add_parser("evaluate", help="accuracy at every γ of a grid, written to Parquet")
    _add_common(p)
    p.add_argument("--checkpoint", help="metamorphic checkpoint (default: RUN_DIR/train/checkpoint.pt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        for text in args.overrides:
            if "=" not in text:
                raise ConfigError(f"argument {text!r} is not allowed: overrides are group.key=value")
        config = _config(args)
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        if args.command == "validate":
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            print(f"# config hash {config.hash()}")
            return 0
        save_config(config, RunPaths(config.run_dir).config)
        resume = True if getattr(args, "resume", False) else (False if getattr(args, "restart", False) else None)
        if args.command in ("pretrain", "run"):
            from raymeta.pretrain import pretrain

            pretrain(config, progress, resume=resume)
        if args.command in ("smooth", "run"):
            smooth(config, progress)
        if args.command in ("train", "run"):
            if args.workers == 0:
                from raymeta.train import train

                train(config, resume=resume, progress=progress)
            else:
                from raymeta.distributed import DistributedOptions, train_distributed

                if args.workers is not None and args.workers < 0:
                    raise ConfigError(f"--workers={args.workers} is not allowed: use 0 (no Ray) or more")
                if args.max_failures < -1:
                    raise ConfigError(f"--max-failures={args.max_failures} is not allowed: use -1 (forever) or more")
                options = DistributedOptions(workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                                             cpus_per_worker=args.cpus_per_worker, address=args.address,
                                             storage_path=args.storage_path, max_failures=args.max_failures)
                train_distributed(config, options, resume=resume, progress=progress)
        if args.command in ("evaluate", "run"):
            evaluate(config, progress, getattr(args, "checkpoint", None))
        return 0
    except RaymetaError as error:
        print(f"raymeta: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raymeta: interrupted; the last epoch checkpoint is kept (resume with raymeta train)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
