"""``raymeta``: one command, a verb per stage of the pipeline.

    raymeta pretrain  --config jobs/quickstart.yaml            train the prior (γ = 0, with BatchNorm)
    raymeta smooth    --config jobs/quickstart.yaml            fold BatchNorm, permute channels
    raymeta train     --config jobs/quickstart.yaml            train the INRs
    raymeta evaluate  --config jobs/quickstart.yaml            accuracy at every γ on the test split → Parquet
    raymeta run       --config jobs/quickstart.yaml            all four in order
    raymeta validate  --config jobs/quickstart.yaml            load, validate and print the configuration
    raymeta baseline individual --config jobs/quickstart.yaml  ResNets trained from scratch at each γ
    raymeta baseline prune --run-dir runs/quickstart           the prior pruned to each γ (Torch-Pruning)
    raymeta baseline skip --run-dir runs/quickstart            the prior without its metamorphic blocks
    raymeta export --run-dir runs/quickstart --gamma 0.25      a standalone network at one γ (or 0.25,0.5: per block)
    raymeta deploy --run-dir runs/quickstart --max-macs 20M    the best network within a budget (MACs, params, latency)
    raymeta report runs/*/results -o reports/NAME.html         self-contained HTML report of result tables
    raymeta sweep --space tune_spaces/lambdas.yaml --config jobs/quickstart.yaml
                                                               Ray Tune trials over a search space

Any ``group.key=value`` argument overrides the YAML, e.g. ``train.epochs_per_stage=2 data.name=synthetic``.
pretrain, train and run continue (or reuse) checkpoints of the same configuration; ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from raymeta.checkpoint import load_checkpoint, save_checkpoint
from raymeta.config import Config, load_config, method_overrides, save_config
from raymeta.errors import CheckpointError, ConfigError, RaymetaError
from raymeta.runtime import Progress, RunPaths


def _config(args: argparse.Namespace) -> Config:
    overrides = method_overrides(getattr(args, "method", None) or "raymeta")
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    return load_config(args.config, overrides + list(args.overrides))


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


def evaluate(config: Config, progress: Progress, checkpoint: str | None = None, split: str = "test") -> Path:
    """Evaluate a trained metamorphic network at every γ of ``eval.gammas`` on ``split`` (test or validation);
    write a Parquet table."""
    from raymeta.evaluate import check_split, evaluate_run, format_rows, write_table

    check_split(split)
    paths = RunPaths(config.run_dir)
    frame = evaluate_run(config, checkpoint or paths.train_checkpoint, progress, split)
    path = write_table(frame, paths.results)
    print(format_rows(frame), flush=True)
    progress(f"evaluate: wrote {path}")
    return path


def _gammas(text: str | None, config: Config) -> list[float]:
    if text is None:
        return list(config.eval.gammas)
    try:
        values = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ConfigError(f"--gammas={text!r} is not allowed: a comma-separated list of numbers, e.g. 0,0.25,0.5") from None
    if not values:
        raise ConfigError(f"--gammas={text!r} names no γ")
    return values


def _run_config(args: argparse.Namespace) -> Config:
    """The job config; for commands on an existing run without --config, the run's own config.yaml."""
    if args.config is None and args.run_dir and RunPaths(args.run_dir).config.is_file():
        args.config = str(RunPaths(args.run_dir).config)
    return _config(args)


def baseline(args: argparse.Namespace, progress: Progress) -> list[Path]:
    """``raymeta baseline individual|prune|skip``: baseline rows at the γ of a grid, in the results schema."""
    from raymeta.baselines import (check_importances, load_smoothed_prior, metamorphic_blocks, metamorphic_epochs,
                                   run_individual, run_pruning, run_skip)
    from raymeta.runtime import load_data, select_device
    from raymeta.train import load_prior_network

    config = _run_config(args)
    gammas = _gammas(args.gammas, config)
    device = select_device(config)
    paths = RunPaths(config.run_dir)
    name = Path(config.run_dir).name
    if args.kind == "individual":
        paths.root.mkdir(parents=True, exist_ok=True)
        save_config(config, paths.config)
        bundle = load_data(config)
        epochs = args.epochs or config.pretrain.epochs
        progress(f"baseline individual: {len(gammas)} γ values, {epochs} epochs each, on {bundle.info.name}")
        return run_individual(config, bundle, gammas, Path(args.out or paths.results), run_name=name, epochs=epochs,
                              lr=args.lr or config.pretrain.lr, device=device, progress=progress)
    if args.kind == "skip":
        prior = load_smoothed_prior(config.run_dir)
        bundle = load_data(config)
        epochs = args.epochs if args.epochs is not None else metamorphic_epochs(
            config, len(metamorphic_blocks(config, prior.arch)))
        return run_skip(config, prior, bundle, gammas, Path(args.out or paths.results), run_name=name, epochs=epochs,
                        device=device, progress=progress)
    importances = check_importances(args.importance)
    payload = load_checkpoint(paths.prior, kind="prior", required=("arch", "state_dict"))
    if not payload.get("done"):
        raise CheckpointError(f"the prior {paths.prior} is unfinished: run raymeta pretrain to finish it")
    prior = load_prior_network({**payload, "batchnorm": True})
    bundle = load_data(config)
    progress(f"baseline prune: {', '.join(importances)} importance; γ {', '.join(f'{g:g}' for g in gammas)}; "
             f"fine-tune {args.finetune_epochs} epoch(s)")
    return run_pruning(config, prior, bundle, gammas, importances, Path(args.out or paths.results), run_name=name,
                       finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                       gradient_batches=args.gradient_batches, device=device, progress=progress)


def export(args: argparse.Namespace, progress: Progress) -> dict[str, Path]:
    """``raymeta export``: the network generated at one γ as a state dict + spec and TorchScript."""
    from raymeta.export import export_network
    from raymeta.train import load_trained
    from raymeta.widths import format_gamma, parse_gamma

    run_dir = args.run_dir or (_config(args).run_dir if args.config else None)
    if not run_dir and not args.checkpoint:
        raise ConfigError("raymeta export needs --run-dir (or --checkpoint) naming a trained run")
    checkpoint = Path(args.checkpoint) if args.checkpoint else RunPaths(run_dir).train_checkpoint
    net, trained_config, payload = load_trained(checkpoint)
    if not payload.get("done"):
        progress("export: note — the checkpoint is from an unfinished run")
    gamma = parse_gamma(args.gamma)
    widths = ", ".join(f"{h}" for h in net.hidden_widths(gamma).values())
    out = Path(args.output or (checkpoint.parent.parent / "export" / f"gamma={format_gamma(gamma)}"))
    paths = export_network(net, trained_config, payload.get("dataset", {}), gamma, out, samples=args.samples,
                           source=str(checkpoint), onnx=False if args.no_onnx else None)
    if "onnx" not in paths and not args.no_onnx:
        progress("export: note — no ONNX file: it needs the onnx and onnxscript packages (pip install 'raymeta[export]')")
    progress(f"export: γ={format_gamma(gamma)} (hidden widths {widths}) → {', '.join(str(p) for p in paths.values())}")
    return paths


def deploy(args: argparse.Namespace, progress: Progress) -> dict:
    """``raymeta deploy``: the best configuration within a budget, found on validation and exported (see
    raymeta.deploy)."""
    from raymeta.deploy import DeployOptions, deploy as deploy_run, parse_budget, parse_grid

    budgets = [(kind, text) for kind, text in (("macs", args.max_macs), ("params", args.max_params),
                                               ("latency_ms", args.max_latency_ms)) if text is not None]
    if len(budgets) != 1:
        raise ConfigError("raymeta deploy needs exactly one budget: --max-macs (e.g. 20M), --max-params (e.g. 200k) "
                          "or --max-latency-ms (e.g. 1.5)")
    budget = parse_budget(*budgets[0])
    run_dir = args.run_dir or (_config(args).run_dir if args.config else None)
    if not run_dir:
        raise ConfigError("raymeta deploy needs --run-dir naming a trained run")
    options = DeployOptions(device=args.device, batch_size=args.batch_size, threads=args.threads,
                            grid=parse_grid(args.gammas), max_candidates=args.candidates, samples=args.samples,
                            address=args.address, report_test=args.report_test, output=args.output,
                            onnx=False if args.no_onnx else None)
    return deploy_run(run_dir, budget, options, progress)


def report(args: argparse.Namespace, progress: Progress) -> Path:
    """``raymeta report``: a self-contained HTML page from result tables (nothing else is read)."""
    from raymeta.report import write_report
    from raymeta.results import read_tables, table_paths

    paths = table_paths(args.tables)
    frame = read_tables(paths)
    output = write_report(frame, args.output, title=args.title)
    progress(f"report: {len(frame)} rows from {len(paths)} table(s) → {output} "
             f"({output.stat().st_size / 1e6:.1f} MB)")
    return output


def run_report(config: Config, progress: Progress) -> Path:
    """The last step of ``raymeta run``: RUN_DIR/report.html from the run's own result tables."""
    from raymeta.report import write_report
    from raymeta.results import read_tables

    paths = RunPaths(config.run_dir)
    output = write_report(read_tables(paths.results), paths.root / "report.html",
                          title=f"raymeta run {paths.root.name}")
    progress(f"report: {output} (open it in a browser; `raymeta report` combines runs and baselines)")
    return output


def sweep(args: argparse.Namespace, progress: Progress) -> dict:
    """``raymeta sweep``: Ray Tune over a search space, each trial a Ray Train run (see raymeta.sweep)."""
    from raymeta.space import load_space
    from raymeta.sweep import SweepOptions, run_sweep

    config = _config(args)
    space = load_space(args.space, config)
    resume = True if args.resume else (False if args.restart else None)
    options = SweepOptions(sweep_dir=args.sweep_dir, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                           gpus_per_worker=args.gpus_per_worker, trial_cpus=args.trial_cpus,
                           max_concurrent_trials=args.max_concurrent_trials, num_samples=args.num_samples,
                           search=args.search, scheduler=args.scheduler,
                           score_gammas=_gammas(args.score_gammas, config) if args.score_gammas else None,
                           address=args.address, trial_retries=args.trial_retries, resume=resume,
                           verbose=args.verbose)
    return run_sweep(space, config, options, progress)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="Ray Tune trials over a search space (tune_spaces/*.yaml)",
                       description="Train one Ray Train run per trial of a search space, stop bad trials early "
                                   "(ASHA on the mean monitored validation accuracy over seen γ), evaluate on "
                                   "the validation and test splits, choose the best trial on validation, and "
                                   "write SWEEP_DIR/results, best.yaml and report.html. Running the same "
                                   "command again continues an interrupted sweep.")
    _add_common(p)
    p.add_argument("--space", required=True, help="search-space YAML, e.g. tune_spaces/lambdas.yaml")
    p.add_argument("--sweep-dir", help="the sweep's folder (default: RUN_DIR/sweeps/<space name>)")
    p.add_argument("--search", choices=["random", "grid", "optuna"], help="override the space's search")
    p.add_argument("--scheduler", choices=["asha", "fifo"], help="override the space's scheduler (fifo: no early stop)")
    p.add_argument("--num-samples", type=int, help="override the space's num_samples")
    p.add_argument("--max-concurrent-trials", type=int, help="at most this many trials at once (default: as many "
                                                             "as the cluster fits, or the space's limit)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (default 1)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0)")
    p.add_argument("--trial-cpus", type=float, default=1.0,
                   help="CPUs of each trial's driver, which also evaluates the trained network (default 1)")
    p.add_argument("--score-gammas", help="γ monitored each epoch, on the validation split, for the score, "
                                          "e.g. 0,0.25,0.5 (default: the seen γ of eval.gammas)")
    p.add_argument("--trial-retries", type=int, default=1, help="retries of an errored trial (default 1)")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS if set, else an embedded Ray)")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="Tune's console output (default 1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="require a sweep in the folder to continue")
    group.add_argument("--restart", action="store_true", help="delete the sweep folder and start over")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="experiment YAML (see jobs/); defaults apply without one")
    parser.add_argument("--run-dir", help="override run_dir: where this run's files go")
    parser.add_argument("overrides", nargs="*", metavar="group.key=value", help="config overrides")


def _add_distributed(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed training (Ray Train)")
    group.add_argument("--workers", type=int, default=None,
                       help="Ray Train workers (default: as many as the cluster allows, at most M = "
                            "train.configs_per_step; more cut each micro-batch into slices); 0 trains in this "
                            "process without Ray")
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
                            ("run", "pretrain, smooth, train, evaluate, report")]:
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        if name != "pretrain":
            p.add_argument("--method", choices=["raymeta", "recipe", "neumeta"], default="raymeta",
                           help="raymeta: the config as written (raymeta's method by default); recipe: the papers' "
                                "method (HTTY's full recipe, none of raymeta's departures); neumeta: the papers' "
                                "method with every component of the recipe switched off (the original baseline)")
            _add_distributed(p)
        group = p.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_true",
                           help="require a checkpoint to continue from (default: continue one of the same config)")
        group.add_argument("--restart", action="store_true", help="ignore existing checkpoints and start over")
    p = sub.add_parser("evaluate", help="accuracy at every γ of a grid, written to Parquet")
    _add_common(p)
    p.add_argument("--checkpoint", help="metamorphic checkpoint (default: RUN_DIR/train/checkpoint.pt)")
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="the data to evaluate on (default test; validation: the split held out of the training "
                        "data by data.validation_fraction, for model selection)")
    _add_extra_commands(sub)
    _add_sweep(sub)
    return parser


def _add_extra_commands(sub) -> None:
    """Baselines, export and report: commands on finished runs and result tables."""
    p = sub.add_parser("baseline", help="individual, pruned or skip networks at each γ, as result rows")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("individual", help="an ordinary ResNet trained from scratch at each γ")
    _add_common(k)
    k.add_argument("--gammas", help="comma-separated γ values, e.g. --gammas=-0.25,0,0.5 (default: eval.gammas)")
    k.add_argument("--epochs", type=int, help="training epochs per γ (default: pretrain.epochs)")
    k.add_argument("--lr", type=float, help="peak learning rate (default: pretrain.lr)")
    k.add_argument("--out", help="results folder (default: RUN_DIR/results)")
    k = kinds.add_parser("prune", help="the run's prior pruned to each γ ≥ 0 with Torch-Pruning")
    _add_common(k)
    k.add_argument("--importance", nargs="+", default=["all"],
                   help="random, l1, l2, taylor, hessian or all (default), space- or comma-separated")
    k.add_argument("--gammas", help="comma-separated γ values, e.g. --gammas=0,0.5 (default: eval.gammas; γ < 0 is skipped)")
    k.add_argument("--finetune-epochs", type=int, default=3,
                   help="epochs of fine-tuning after pruning; rows prune-X+ft (0: pruned rows only)")
    k.add_argument("--finetune-lr", type=float, default=0.01, help="peak learning rate of the fine-tune")
    k.add_argument("--gradient-batches", type=int, default=4, help="training batches for Taylor/Hessian gradients")
    k.add_argument("--out", help="results folder (default: RUN_DIR/results)")
    k = kinds.add_parser("skip", help="the run's smoothed prior with every metamorphic block removed (α = 0), its "
                                      "fine-tuned part trained as the metamorphic run trains it: the floor a "
                                      "metamorphic network must clear",
                         description="The smoothed prior of RUN_DIR with the residual branch of every block of "
                                     "train.blocks removed (each block the identity: the metamorphic network with "
                                     "every α = 0); the part the metamorphic run fine-tunes (the last block unless "
                                     "it is metamorphic, and the classifier; nothing with train.finetune_head off) "
                                     "trained with AdamW at train.head_lr for as many epochs as the metamorphic "
                                     "run. One network for every γ: rows 'skip' repeat its test accuracy at each γ.")
    _add_common(k)
    k.add_argument("--gammas", help="comma-separated γ values of its rows, e.g. --gammas=0,0.5 (default: eval.gammas)")
    k.add_argument("--epochs", type=int, help="training epochs (default: the metamorphic run's, every stage together)")
    k.add_argument("--out", help="results folder (default: RUN_DIR/results)")
    p = sub.add_parser("export", help="a standalone network at one γ: state dict + spec, torch.export and ONNX")
    _add_common(p)
    p.add_argument("--gamma", required=True,
                   help="compression ratio γ of the exported network, or one γ per metamorphic block in "
                        "train.blocks order, comma-separated (e.g. 0.25,0.5)")
    p.add_argument("--samples", type=int, help="K noisy weight samples averaged (default: eval.samples of the run)")
    p.add_argument("--checkpoint", help="metamorphic checkpoint (default: RUN_DIR/train/checkpoint.pt)")
    p.add_argument("--no-onnx", action="store_true", help="do not write network.onnx (the slowest format to export)")
    p.add_argument("-o", "--output", help="output folder (default: RUN_DIR/export/gamma=G)")
    p = sub.add_parser("deploy", help="the best network within a MAC, parameter or latency budget, exported",
                       description="Search the run's configurations (uniform γ, then one γ per metamorphic block) "
                                   "for the best validation accuracy within the budget, and export it. Writes "
                                   "RUN_DIR/deploy/<budget>/: the network (state dict + spec, torch.export, ONNX), "
                                   "pareto.parquet (every candidate) and deploy.json.")
    _add_common(p)
    p.add_argument("--max-macs", help="budget of multiply-accumulates per image, e.g. 20M")
    p.add_argument("--max-params", help="budget of parameters, e.g. 200k")
    p.add_argument("--max-latency-ms", help="budget of measured latency in milliseconds per batch, e.g. 1.5")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where latency is measured (default cpu)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size latency is measured at (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads latency is measured with (default 1)")
    p.add_argument("--gammas", help="the γ grid every block takes values from, comma-separated "
                                    "(default -0.25,-0.125,…,0.75)")
    p.add_argument("--candidates", type=int, default=60, help="most configurations to evaluate (default 60)")
    p.add_argument("--samples", type=int, help="K noisy weight samples averaged (default: eval.samples of the run)")
    p.add_argument("--address", help="evaluate candidates as tasks on this Ray cluster (default: Ray tasks when "
                                     "already connected, else in this process)")
    p.add_argument("--report-test", action="store_true",
                   help="also evaluate the uniform γ and the validation fronts on the test split, for the report "
                        "(never used to choose)")
    p.add_argument("--no-onnx", action="store_true", help="do not write network.onnx (the slowest format to export)")
    p.add_argument("-o", "--output", help="output folder (default: RUN_DIR/deploy/<budget>)")
    p = sub.add_parser("report", help="self-contained HTML report of result tables")
    p.add_argument("tables", nargs="+", help="Parquet files, folders (searched recursively) or glob patterns")
    p.add_argument("-o", "--output", required=True, help="HTML file to write, e.g. reports/NAME.html")
    p.add_argument("--title", default="raymeta report", help="page title")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        if args.command in ("baseline", "export", "deploy", "report", "sweep"):
            return _run_extra_command(args, progress)
        for text in args.overrides:
            if "=" not in text:
                raise ConfigError(f"argument {text!r} is not allowed: overrides are group.key=value")
        # evaluate reads an existing run: without --config, the run's own config.yaml (which it never rewrites)
        config = _run_config(args) if args.command == "evaluate" else _config(args)
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        if args.command == "validate":
            print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
            print(f"# config hash {config.hash()}")
            return 0
        if args.command != "evaluate":
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
            evaluate(config, progress, getattr(args, "checkpoint", None), getattr(args, "split", "test"))
        if args.command == "run":
            run_report(config, progress)
        return 0
    except RaymetaError as error:
        print(f"raymeta: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raymeta: interrupted; the last epoch checkpoint is kept (resume with raymeta train)", file=sys.stderr)
        return 130


def _run_extra_command(args: argparse.Namespace, progress: Progress) -> int:
    for text in getattr(args, "overrides", []):
        if "=" not in text:
            raise ConfigError(f"argument {text!r} is not allowed: overrides are group.key=value")
    {"baseline": baseline, "export": export, "deploy": deploy, "report": report,
     "sweep": sweep}[args.command](args, progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
