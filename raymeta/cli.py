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
    raymeta baseline slimmable --run-dir runs/quickstart       US-Nets: one sliced network, as long as the run trained
    raymeta baseline merge --run-dir runs/quickstart           the smoothed prior resampled to each γ, untrained
    raymeta baseline inr-off --run-dir runs/quickstart         the trained run with its INRs' correction off
    raymeta export --run-dir runs/quickstart --gamma 0.25      a standalone network at one γ (or one γ per block)
    raymeta deploy --run-dir runs/quickstart --max-macs 20M    the best network within a budget (MACs, params, latency)
    raymeta report runs/*/results -o reports/NAME.html         self-contained HTML report of result tables
    raymeta sweep --space tune_spaces/lambdas.yaml --config jobs/quickstart.yaml
                                                               Ray Tune trials over a search space

Any ``group.key=value`` argument overrides the YAML, e.g. ``train.epochs_per_stage=2 data.name=synthetic``.
Overrides may stand anywhere among the flags, also after a list flag's values (``--gammas 0 0.5 train.lr=1e-3``).
The flags of the ``ray:``, ``sweep:``, ``baseline:``, ``deploy:`` and ``export:`` groups (--workers,
--num-samples, --epochs, --max-macs, --gamma, …) are the same settings, generated from the config's field
docstrings: a job YAML can hold every one of them.
pretrain, train and run continue (or reuse) checkpoints of the same configuration; ``--restart`` starts over.

The CLI only parses and dispatches: every command is a function of a Config in raymeta.stages or
raymeta.drivers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

import yaml

from raymeta.config.docs import field_docs
from raymeta.config.loading import load_config, method_overrides
from raymeta.config.schema import (
    TRACKERS,
    BaselineConfig,
    Config,
    DeployConfig,
    ExportConfig,
    RayConfig,
    SweepConfig,
    TrackingConfig,
)
from raymeta.drivers.jobs import require_kept_output
from raymeta.errors import ConfigError, RaymetaError
from raymeta.io.files import RunPaths, location, require_local, save_config
from raymeta.io.progress import Progress
from raymeta.method.presets import METHODS

FLAG_PREFIX = "flag:"
"""Namespace attributes of generated flags are ``flag:group.key``; what a user gave becomes an override."""
TEXT_FLAG = "flag-text:"
"""The prefix of a text field's flag: its value is taken as written (a path or address is not read as YAML)."""
TRAILING = "overrides-after-a-list"
"""The namespace attribute of the ``group.key=value`` arguments that followed a list flag's values or a switch flag."""


# ---- a parser that takes what users type ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands take their positional arguments (the ``group.key=value`` overrides)
    before, between or after their flags: ``raymeta run --config X a=1 --workers 0 b=2``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _IntermixedSubcommands)


class _IntermixedSubcommands(argparse._SubParsersAction):
    """Subcommands parsed with ``parse_known_intermixed_args`` (which argparse offers for a parser, but does not
    apply to subcommands); a subcommand with subcommands of its own (baseline) hands on to them as usual.

    The overrides are kept in the order they were typed, so that the last of a key given twice wins wherever it
    stands (after a list flag's values too)."""

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = self._name_parser_map.get(values[0])
        if chosen is None or chosen._subparsers is not None:
            return super().__call__(parser, namespace, values, option_string)
        setattr(namespace, self.dest, values[0])
        subnamespace, extras = chosen.parse_known_intermixed_args(values[1:], None)
        given = [*getattr(subnamespace, "overrides", []), *getattr(subnamespace, TRAILING, [])]
        if given:
            subnamespace.overrides = _in_typed_order(given, values[1:])
        if hasattr(subnamespace, TRAILING):
            delattr(subnamespace, TRAILING)
        for key, value in vars(subnamespace).items():
            setattr(namespace, key, value)
        if extras:
            vars(namespace).setdefault(argparse._UNRECOGNIZED_ARGS_ATTR, []).extend(extras)


def _in_typed_order(arguments: list[str], typed: list[str]) -> list[str]:
    """``arguments`` (each one of ``typed``) in the order they stand in ``typed``."""
    left = list(arguments)
    ordered = []
    for text in typed:
        if text in left:
            left.remove(text)
            ordered.append(text)
    return ordered + left


class _ListFlag(argparse.Action):
    """A list-valued flag (``--gammas 0 0.5``, or ``--gammas 0,0.5``): its values are the arguments up to the next
    flag or the first ``group.key=value``, which, like every argument after it, is an override and no value of the
    list (``--gammas 0 0.5 train.lr=1e-3``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        first = next((i for i, text in enumerate(values) if "=" in text), len(values))
        if first == 0:
            parser.error(f"argument {option_string}: expected at least one value before {values[0]}")
        setattr(namespace, self.dest, values[:first])
        if values[first:]:
            setattr(namespace, TRAILING, [*getattr(namespace, TRAILING, []), *values[first:]])


class _SwitchFlag(argparse.Action):
    """A true/false flag: alone it means true (``--report-test``), or it takes true or false; a ``group.key=value``
    after it is an override, not its value (``--report-test train.lr=1e-3``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values is not None and "=" in values:
            setattr(namespace, TRAILING, [*getattr(namespace, TRAILING, []), values])
            values = None
        setattr(namespace, self.dest, "true" if values is None else values)


# ---- flags generated from the config's field docstrings ------------------------------------------------------


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls,
    group: str,
    names: typing.Iterable[str] | None = None,
    aliases: dict[str, list[str]] | None = None,
) -> None:
    """One ``--kebab-name`` flag per field of the config dataclass ``cls`` (or of ``names``), its help the field's
    docstring; a flag given sets ``group.field`` after the YAML, as a ``group.field=value`` override would.

    A list field's flag takes values space- or comma-separated; a true/false field's flag alone means true
    (``--report-test``), or takes true or false. ``aliases`` adds option strings (e.g. ``-o`` for output)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    fields = {item.name: item for item in dataclasses.fields(cls)}
    for name in names if names is not None else fields:
        default = (
            fields[name].default if fields[name].default is not dataclasses.MISSING else fields[name].default_factory()
        )
        shown = "null" if default is None else (",".join(map(str, default)) if isinstance(default, list) else default)
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        options = (hints[name], *typing.get_args(hints[name]))
        is_list = any(option is list or typing.get_origin(option) is list for option in options)
        text = str in options
        kind = (
            {"nargs": "+", "action": _ListFlag, "metavar": "A,B"}
            if is_list
            else {"nargs": "?", "action": _SwitchFlag, "metavar": "true|false"}
            if bool in options
            else {"metavar": name.upper()}
        )
        parser.add_argument(
            *(aliases or {}).get(name, []),
            f"--{name.replace('_', '-')}",
            dest=f"{TEXT_FLAG if text else FLAG_PREFIX}{group}.{name}",
            default=argparse.SUPPRESS,
            help=f"{docs[name]} [{group}.{name}; default {shown}]".replace("%", "%%"),
            **kind,
        )


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """``group.key=value`` for every generated flag given on the command line (lists comma- or space-separated)."""
    overrides = []
    for dest, value in vars(args).items():
        prefix = next((p for p in (FLAG_PREFIX, TEXT_FLAG) if dest.startswith(p)), None)
        if prefix is None:
            continue
        if isinstance(value, list):
            items = [part.strip() for text in value for part in str(text).split(",") if part.strip()]
            value = "[" + ", ".join(json.dumps(item) if prefix == TEXT_FLAG else item for item in items) + "]"
        elif prefix == TEXT_FLAG:
            value = json.dumps(value)  # JSON strings are YAML strings: the text exactly as given
        overrides.append(f"{dest[len(prefix) :]}={value}")
    return overrides


def _config(args: argparse.Namespace) -> Config:
    """The job config: the YAML (or, for commands on an existing run without --config, the run's own
    config.yaml), then --method, --run-dir, the group.key=value arguments and the generated flags."""
    for text in getattr(args, "overrides", []):
        if "=" not in text:
            raise ConfigError(f"argument {text!r} is not allowed: overrides are group.key=value")
    if (
        getattr(args, "config", None) is None
        and getattr(args, "reads_run", False)
        and args.run_dir
        and RunPaths(args.run_dir).config.is_file()
    ):
        args.config = RunPaths(args.run_dir).config
    overrides = method_overrides(getattr(args, "method", None) or "raymeta")
    if getattr(args, "run_dir", None):
        overrides.append(f"run_dir={args.run_dir}")
    config = load_config(args.config, overrides + list(args.overrides) + flag_overrides(args))
    if args.command != "validate":  # validate writes nothing
        require_kept_output(_output_folders(args, config))
    return config


def _output_folders(args: argparse.Namespace, config: Config) -> dict[str, str | None]:
    """The folders a command writes to, by the setting (or flag) that names them."""
    folders = {"run_dir": config.run_dir, "ray.storage_path": config.ray.storage_path}
    if args.command == "sweep":
        folders["sweep.sweep_dir"] = config.sweep.sweep_dir
    if args.command in ("deploy", "export"):
        folders[f"{args.command}.output"] = getattr(config, args.command).output
    if args.command == "baseline":
        folders["--out"] = args.out
    return folders


def _resume(args: argparse.Namespace) -> bool | None:
    return True if getattr(args, "resume", False) else (False if getattr(args, "restart", False) else None)


# ---- dispatch -------------------------------------------------------------------------------------------------


def _pipeline(args: argparse.Namespace, progress: Progress) -> None:
    """validate, pretrain, smooth, train, evaluate, run: stages of one run folder."""
    config = _config(args)
    if args.command == "validate":
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        print(f"# config hash {config.hash()}")
        return
    if config.tracking.enabled():  # a tracker that cannot work is refused before any work, not after it
        from raymeta.io.tracking import resolve_tracking

        config = resolve_tracking(config)
    location(config.run_dir).mkdir(parents=True, exist_ok=True)
    if args.command != "evaluate":  # evaluate reads an existing run and never rewrites its config.yaml
        save_config(config, RunPaths(config.run_dir).config)
    resume = _resume(args)
    if args.command == "pretrain":
        from raymeta.stages.pretrain import pretrain

        pretrain(config, progress, resume=resume)
    elif args.command == "smooth":
        from raymeta.stages.smooth import smooth

        smooth(config, progress)
    elif args.command == "train":
        from raymeta.drivers.pipeline import train_stage

        train_stage(config, progress, resume=resume)
    elif args.command == "evaluate":
        from raymeta.stages.evaluate import run_evaluate

        run_evaluate(config, progress, args.checkpoint, args.split)
    elif args.command == "run":
        from raymeta.drivers.pipeline import run_pipeline

        run_pipeline(config, progress, resume=resume)


def _local_run_dir(args: argparse.Namespace) -> None:
    """Commands whose files go through local file operations refuse an object-storage --run-dir before reading
    anything from it."""
    if args.run_dir:
        require_local(args.run_dir, f"raymeta {args.command}'s run_dir")


def _baseline(args: argparse.Namespace, progress: Progress) -> None:
    from raymeta.stages.baselines import run_baseline

    _local_run_dir(args)
    run_baseline(args.kind, _config(args), progress, out=args.out)


def _export(args: argparse.Namespace, progress: Progress) -> None:
    from raymeta.stages.export import run_export

    _local_run_dir(args)
    config = _config(args)
    run_dir = args.run_dir or (config.run_dir if args.config else None)
    paths = run_export(config.export, progress, run_dir=run_dir)
    _log_outputs(config, run_dir, list(paths.values()), f"export/{Path(next(iter(paths.values()))).parent.name}")


def _deploy(args: argparse.Namespace, progress: Progress) -> None:
    from raymeta.stages.deploy import deploy

    _local_run_dir(args)
    config = _config(args)
    config.deploy.budget()  # exactly one budget, before anything is loaded
    run_dir = args.run_dir or (config.run_dir if args.config else None)
    if not run_dir:
        raise ConfigError("raymeta deploy needs --run-dir naming a trained run")
    summary = deploy(run_dir, config.deploy, progress)
    files = [Path(path) for path in (summary or {}).get("files", {}).values()]
    if files:
        _log_outputs(config, run_dir, [*files, files[0].parent / "deploy.json"], f"deploy/{files[0].parent.name}")


def _log_outputs(config: Config, run_dir: str | None, paths: list[Path], folder: str) -> None:
    """Files an export or deploy wrote, to the trained run's tracked run: the one its config.yaml names, with
    its tracking settings, or the command's when they switch a tracker on (``--mlflow``, …)."""
    saved = RunPaths(run_dir).config if run_dir else None
    if saved is None or not saved.is_file():
        return
    from raymeta.io.tracking import log_run_files

    trained = load_config(saved)
    tracking = config.tracking if config.tracking.enabled() else trained.tracking
    log_run_files(dataclasses.replace(trained, run_dir=str(run_dir), tracking=tracking), paths, folder)


def _report(args: argparse.Namespace, progress: Progress) -> None:
    from raymeta.stages.report import report_tables

    require_kept_output({"--output": str(args.output)})
    report_tables(args.tables, args.output, progress, title=args.title)


def _sweep(args: argparse.Namespace, progress: Progress) -> None:
    from raymeta.drivers.space import load_space
    from raymeta.drivers.sweep import run_sweep

    config = _config(args)
    if config.sweep.space is None:
        raise ConfigError(
            "raymeta sweep needs a search space: --space tune_spaces/NAME.yaml, or sweep.space in the job config"
        )
    run_sweep(load_space(config.sweep.space, config), config, progress, resume=_resume(args))


COMMANDS = {
    "validate": _pipeline,
    "pretrain": _pipeline,
    "smooth": _pipeline,
    "train": _pipeline,
    "evaluate": _pipeline,
    "run": _pipeline,
    "baseline": _baseline,
    "export": _export,
    "deploy": _deploy,
    "report": _report,
    "sweep": _sweep,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        COMMANDS[args.command](args, progress)
        return 0
    except RaymetaError as error:
        print(f"raymeta: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raymeta: interrupted; the last epoch checkpoint is kept (resume with raymeta train)", file=sys.stderr)
        return 130


# ---- the parser ---------------------------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, reads_run: bool = False) -> None:
    parser.add_argument(
        "--config",
        help="experiment YAML (see jobs/); defaults apply without one"
        + ("; on an existing run, RUN_DIR/config.yaml" if reads_run else ""),
    )
    parser.add_argument("--run-dir", help="override run_dir: where this run's files go")
    parser.add_argument("overrides", nargs="*", metavar="group.key=value", help="config overrides")
    parser.set_defaults(reads_run=reads_run)


def _add_resume(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help=f"require {what} to continue from (default: continue one of the same config)",
    )
    group.add_argument("--restart", action="store_true", help="ignore what is there and start over")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raymeta", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("smooth", "fold BatchNorm and permute channels"),
        ("validate", "load, validate and print the configuration"),
    ]:
        _add_common(sub.add_parser(name, help=help_text))
    for name, help_text in [
        ("pretrain", "train the prior"),
        ("train", "train the hypernetwork"),
        ("run", "pretrain, smooth, train, evaluate, report"),
    ]:
        p = sub.add_parser(name, help=help_text)
        _add_common(p)
        if name != "pretrain":
            p.add_argument(
                "--method",
                choices=METHODS,
                default="raymeta",
                help="raymeta: the config as written (raymeta's method by default); recipe: the papers' "
                "method (HTTY's full recipe, none of raymeta's departures, optimised as HTTY's code does: "
                "docs/method.md); neumeta: the papers' "
                "method with every component of the recipe switched off (the original baseline)",
            )
            add_config_flags(
                p.add_argument_group("distributed training (Ray Train; the config's ray: group)"), RayConfig, "ray"
            )
            _add_tracking(p)
        _add_resume(p, "a checkpoint")
    p = sub.add_parser("evaluate", help="accuracy at every γ of a grid, written to Parquet")
    _add_common(p, reads_run=True)
    p.add_argument("--checkpoint", help="metamorphic checkpoint (default: RUN_DIR/train/checkpoint.pt)")
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="the data to evaluate on (default test; validation: the split held out of the training "
        "data by data.validation_fraction, for model selection)",
    )
    _add_baseline(sub)
    _add_export_report(sub)
    _add_sweep(sub)
    return parser


def _add_baseline(sub) -> None:
    p = sub.add_parser(
        "baseline", help="individual, pruned, skip, slimmable, merged or INR-off networks at each γ, as result rows"
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, help_text, description, names in [
        ("individual", "an ordinary ResNet trained from scratch at each γ", None, ["gammas", "epochs", "lr"]),
        (
            "prune",
            "the run's prior pruned to each γ ≥ 0 with Torch-Pruning",
            None,
            ["gammas", "importance", "finetune_epochs", "finetune_budget", "finetune_lr", "gradient_batches"],
        ),
        (
            "skip",
            "the run's smoothed prior with every metamorphic block removed (α = 0), its fine-tuned part "
            "trained as the metamorphic run trains it: the floor a metamorphic network must clear",
            "The smoothed prior of RUN_DIR with the residual branch of every block of train.blocks removed (each "
            "block the identity: the metamorphic network with every α = 0); the part the metamorphic run fine-tunes "
            "(the last block unless it is metamorphic, and the classifier; nothing with train.finetune_head off) "
            "trained with AdamW at train.head_lr for as many epochs as the metamorphic run. One network for every "
            "γ: rows 'skip' repeat its test accuracy at each γ.",
            ["gammas", "epochs"],
        ),
        (
            "slimmable",
            "US-Nets: one network from the run's prior, its metamorphic blocks sliced to each width, trained by the "
            "sandwich rule with in-place distillation for as long as the metamorphic run trained",
            "The slimmable network the NeuMeta paper compares against (US-Nets, Yu & Huang 2019): the run's prior "
            "(with BatchNorm) whose metamorphic blocks run at hidden width h by using their first h hidden "
            "channels. Every step trains the widest and the narrowest width of train.gamma_pool and "
            "train.configs_per_step − 2 random widths between, the widest on the labels and the others on its soft "
            "output. It trains for the metamorphic run's training time (its rows' train_time_s in RUN_DIR/results), "
            "or --epochs; then at each γ ≥ 0 the BatchNorm statistics are recomputed on training batches and the "
            "sliced network is scored (γ < 0 cannot be sliced: no row). Rows 'slimmable'.",
            ["gammas", "epochs", "lr", "finetune_lr", "recalibration_batches"],
        ),
        (
            "merge",
            "the run's smoothed prior resampled to each γ by the metamorphic network's prior base, nothing trained",
            "The smoothed prior of RUN_DIR resampled to each γ as the metamorphic network's prior base does "
            "(inr.base=prior: adjacent channels merged, or copied for γ < 0), every α = 1, nothing trained: what "
            "the INRs and the training add to. Rows 'merge', training cost 0; at γ = 0 it is the smoothed prior.",
            ["gammas"],
        ),
        (
            "inr-off",
            "the run's trained metamorphic network with its INRs' correction switched off",
            "The trained metamorphic network of RUN_DIR (train/checkpoint.pt, trained with inr.base=prior) with "
            "every INR's output zeroed: the merged prior base with the trained α and head. Rows "
            "'<method>-inr-off' (e.g. metamorphic-inr-off) with the run's training cost.",
            ["gammas"],
        ),
    ]:
        k = kinds.add_parser(kind, help=help_text, description=description)
        _add_common(k, reads_run=True)
        add_config_flags(
            k.add_argument_group("baseline settings (the config's baseline: group)"), BaselineConfig, "baseline", names
        )
        k.add_argument("--out", help="results folder (default: RUN_DIR/results)")


def _add_tracking(parser: argparse.ArgumentParser, names: typing.Iterable[str] | None = None) -> None:
    settings = parser.add_argument_group("experiment tracking (the config's tracking: group)")
    add_config_flags(settings, TrackingConfig, "tracking", names)


def _add_no_onnx(settings, group: str) -> None:
    """``--no-onnx``: the short form of ``--onnx false`` for the export and deploy groups."""
    settings.add_argument(
        "--no-onnx",
        dest=f"{FLAG_PREFIX}{group}.onnx",
        action="store_const",
        const="false",
        default=argparse.SUPPRESS,
        help="do not write network.onnx (the same as --onnx false)",
    )


def _add_export_report(sub) -> None:
    p = sub.add_parser("export", help="a standalone network at one γ: state dict + spec, torch.export and ONNX")
    _add_common(p)
    settings = p.add_argument_group("export settings (the config's export: group)")
    add_config_flags(settings, ExportConfig, "export", aliases={"output": ["-o"]})
    _add_no_onnx(settings, "export")
    _add_tracking(p, TRACKERS)
    p = sub.add_parser(
        "deploy",
        help="the best network within a MAC, parameter or latency budget, exported",
        description="Search the run's configurations (uniform γ, then one γ per metamorphic block) "
        "for the best validation accuracy within the budget, and export it. Writes "
        "RUN_DIR/deploy/<budget>/: the network (state dict + spec, torch.export, ONNX), "
        "pareto.parquet (every candidate), deploy.json and config.yaml (the settings it "
        "ran with: `raymeta deploy --config` on it deploys again).",
    )
    _add_common(p)
    settings = p.add_argument_group("deploy settings (the config's deploy: group; exactly one budget)")
    add_config_flags(settings, DeployConfig, "deploy", aliases={"output": ["-o"]})
    _add_no_onnx(settings, "deploy")
    _add_tracking(p, TRACKERS)
    p = sub.add_parser("report", help="self-contained HTML report of result tables")
    p.add_argument("tables", nargs="+", help="Parquet files, folders (searched recursively) or glob patterns")
    p.add_argument("-o", "--output", required=True, help="HTML file to write, e.g. reports/NAME.html")
    p.add_argument("--title", default="raymeta report", help="page title")


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="Ray Tune trials over a search space (tune_spaces/*.yaml)",
        description="Train one Ray Train run per trial of a search space, stop bad trials early "
        "(ASHA on the mean monitored validation accuracy over seen γ), evaluate on "
        "the validation and test splits, choose the best trial on validation, and "
        "write SWEEP_DIR/results, best.yaml and report.html. Running the same "
        "command again continues an interrupted sweep.",
    )
    _add_common(p)
    add_config_flags(p.add_argument_group("sweep settings (the config's sweep: group)"), SweepConfig, "sweep")
    add_config_flags(p.add_argument_group("cluster (the config's ray: group)"), RayConfig, "ray", ["address"])
    _add_tracking(p)
    _add_resume(p, "a sweep in the folder")


if __name__ == "__main__":
    sys.exit(main())
