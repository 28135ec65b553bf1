"""Experiment tracking: what a run sends to MLflow, Weights & Biases and TensorBoard (``config.tracking``).

One :class:`Tracker` per process that writes (the single process, or rank 0 of Ray Train's workers) holds a
backend per tracker switched on. It logs the resolved config as parameters once, every epoch's numbers
(:func:`epoch_metrics`) at the epoch's global optimiser step, and files (result tables, the report, exported
networks). The tracked run is found again by its key, the config hash with the run folder
(:func:`tracked_run_key`), so a resumed run, or a later ``raymeta evaluate`` or ``export`` of the same run,
continues it instead of starting another.

The packages are optional (``pip install 'raymeta[tracking]'``); asking for a tracker whose package is missing
is one error naming it. Ray's integrations (``setup_mlflow``, ``setup_wandb``) are passed in by the Ray driver
(``mlflow_setup``, ``wandb_setup``): this layer does not import Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from raymeta.config.schema import Config, short_hash
from raymeta.errors import ConfigError
from raymeta.io.files import StoragePath, absolute, is_remote, location
from raymeta.method.health import worst_by_block
from raymeta.method.objective import LOSS_PARTS

EXTRA = "tracking"
"""The optional dependency group that installs every tracker's package."""
PACKAGES = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "wandb": ("wandb", "wandb"),
    "tensorboard": ("tensorboardX", "tensorboardX"),
}
"""tracker → (module imported, package to install)."""
HASH_TAG, RUN_DIR_TAG = "raymeta.config_hash", "raymeta.run_dir"


def require(tracker: str):
    """The module a tracker needs, imported; missing, one error naming the extra (and package) to install."""
    module, package = PACKAGES[tracker]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"tracking.{tracker}=true needs the {package} package, which is not installed: "
            f"pip install 'raymeta[{EXTRA}]' (or pip install {package}), or tracking.{tracker}=false"
        ) from None


def resolve_tracking(config: Config) -> Config:
    """``config`` with its trackers checked and their places fixed on this, the driving, machine: each package
    importable, the MLflow URI given (``tracking.mlflow_uri``, else ``MLFLOW_TRACKING_URI``) and local paths in it
    made absolute, ``tracking.tensorboard_dir`` absolute. Ray workers run in folders of Ray's own, where a
    relative path would put the records out of sight (and MLflow's default, ``sqlite:///mlflow.db`` in the
    working directory, likewise): one error before any work instead."""
    options, changes = config.tracking, {}
    if options.mlflow:
        uri = options.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError(
                "tracking.mlflow=true needs a tracking URI: tracking.mlflow_uri (--mlflow-uri) or MLFLOW_TRACKING_URI, "
                "e.g. http://HOST:5000 (a server every node reaches), sqlite:////abs/mlflow.db (needs sqlalchemy), "
                "or file:///abs/mlruns (MLflow's file store, with MLFLOW_ALLOW_FILE_STORE=true)"
            )
        changes["mlflow_uri"] = absolute_uri(uri)
    if options.tensorboard_dir:
        changes["tensorboard_dir"] = str(Path(options.tensorboard_dir).resolve())
    elif options.tensorboard and is_remote(config.run_dir):
        raise ConfigError(
            f"tracking.tensorboard=true with run_dir={config.run_dir!r} on object storage: give the event files a "
            "local folder every node sees, tracking.tensorboard_dir (--tensorboard-dir)"
        )
    if options.wandb and is_remote(config.run_dir) and not os.environ.get("WANDB_DIR"):
        raise ConfigError(
            f"tracking.wandb=true with run_dir={config.run_dir!r} on object storage: W&B writes its run folder "
            "locally; set WANDB_DIR to a local folder"
        )
    for tracker in options.enabled():
        require(tracker)
    return dataclasses.replace(config, tracking=dataclasses.replace(options, **changes)) if changes else config


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def absolute_uri(uri: str) -> str:
    """An MLflow tracking URI with a local path in it made absolute: a bare path or ``file:`` (a file store),
    ``sqlite:///relative.db``; servers, ``sqlite:////abs.db``, ``databricks`` and the like as they are."""
    if uri.startswith("file:"):
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri[len("file:") :]).resolve().as_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if uri == "databricks" or _SCHEME.match(uri):
        return uri
    return Path(uri).resolve().as_uri()


def tracked_run_name(config: Config) -> str:
    """The tracked run's name: the run folder's name and the config hash (``quickstart-1a0e6da0b975``)."""
    return f"{location(absolute(config.run_dir)).name}-{config.hash()}"


def tracked_run_key(config: Config) -> str:
    """What identifies the tracked run: the config hash and the run folder (resolved), so that the same
    configuration trained in two folders is two runs, and one folder resumed is one. W&B's run id."""
    return f"{config.hash()}-{short_hash(absolute(config.run_dir))[:8]}"


def flat_params(content: dict, prefix: str = "") -> dict[str, object]:
    """A nested config dict as ``group.key`` → value (lists as their text): what trackers take as parameters."""
    flat = {}
    for key, value in content.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, (list, tuple)) else value
    return flat


def epoch_metrics(record) -> dict[str, float]:
    """A finished epoch (an :class:`~raymeta.io.artifacts.EpochRecord`) as tracker metrics: ``loss/<part>``,
    ``val_accuracy/gamma_<γ>`` per monitored γ, ``score``, ``alpha/<block>``, ``rec/<block>`` (the worst
    relative reconstruction error of the block's tensors at γ = 0), ``stage`` and ``epoch_seconds``. NaN values
    are left out (trackers refuse or mis-plot them)."""
    metrics = {f"loss/{part}": value for part, value in record.losses.items()}
    metrics.update({f"val_accuracy/gamma_{row['gamma']:g}": row["accuracy"] for row in record.monitor})
    metrics["score"] = record.score
    metrics.update({f"alpha/{block}": value for block, value in record.alphas.items()})
    metrics.update({f"rec/{block}": value for block, value in worst_by_block(record.rec_errors).items()})
    metrics.update({"stage": record.stage + 1, "epoch_seconds": record.seconds})
    return {name: float(value) for name, value in metrics.items() if not math.isnan(float(value))}


def report_metrics(report: dict) -> dict:
    """An epoch's report to Ray Train and Tune (``EpochRecord.metrics``) under the names of :func:`epoch_metrics`:
    ``acc@<γ>`` → ``val_accuracy/gamma_<γ>`` (MLflow refuses ``@``), each loss part → ``loss/<part>``; every
    other key as it is. What Tune's logger callbacks log for a sweep's trials."""
    renamed = {}
    for key, value in report.items():
        if key.startswith("acc@"):
            key = f"val_accuracy/gamma_{key[len('acc@') :]}"
        elif key in LOSS_PARTS:
            key = f"loss/{key}"
        renamed[key] = value
    return renamed


# ---- one backend per tracker ------------------------------------------------------------------------------------


class MlflowBackend:
    """An MLflow run: found by its key tags and continued, else started; parameters logged when it starts."""

    def __init__(self, config: Config, setup: Callable | None = None):
        mlflow = require("mlflow")
        options = config.tracking
        if options.mlflow_uri:
            mlflow.set_tracking_uri(options.mlflow_uri)
        experiment = mlflow.set_experiment(options.mlflow_experiment)
        tags = {HASH_TAG: config.hash(), RUN_DIR_TAG: absolute(config.run_dir)}
        previous = [  # the run folder compared here: a path may hold what a filter string cannot
            run
            for run in mlflow.search_runs(
                experiment_ids=[experiment.experiment_id],
                filter_string=f"tags.`{HASH_TAG}` = '{config.hash()}'",
                order_by=["attributes.start_time DESC"],
                output_format="list",
            )
            if run.data.tags.get(RUN_DIR_TAG) == tags[RUN_DIR_TAG]
        ][:1]
        if mlflow.active_run() is not None:
            mlflow.end_run()
        if previous:  # made active first: Ray's setup_mlflow then continues it rather than starting another
            mlflow.start_run(run_id=previous[0].info.run_id)
        if setup is not None:
            mlflow = setup(
                tracking_uri=options.mlflow_uri,
                experiment_name=options.mlflow_experiment,
                run_name=tracked_run_name(config),
                tags=tags,
                create_experiment_if_not_exists=True,
            )
        elif not previous:
            mlflow.start_run(run_name=tracked_run_name(config), tags=tags)
        if not previous:
            mlflow.log_params(flat_params(config.to_dict()))
        self.mlflow = mlflow
        self.run_id = mlflow.active_run().info.run_id
        self.continued = bool(previous)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def log_file(self, path: Path, folder: str) -> None:
        self.mlflow.log_artifact(str(path), artifact_path=folder or None)

    def close(self) -> None:
        self.mlflow.end_run()


class WandbBackend:
    """A W&B run whose id is the tracked run's key (``resume="allow"``: continued when it exists); its files
    under RUN_DIR/wandb/. Files are logged as one artifact per folder."""

    def __init__(self, config: Config, setup: Callable | None = None):
        wandb = require("wandb")
        options = config.tracking
        if is_remote(config.run_dir):  # on object storage: W&B's own local folder (resolve_tracking asks for one)
            folder = Path(os.environ["WANDB_DIR"]).resolve()
        else:
            folder = Path(config.run_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        arguments = {
            "project": options.wandb_project,
            "entity": options.wandb_entity,
            "id": tracked_run_key(config),
            "name": tracked_run_name(config),
            "resume": "allow",
            "dir": str(folder),
            "config": flat_params(config.to_dict()),
            "allow_val_change": True,  # a resumed run may run elsewhere (another run_dir, device or workers)
        }
        self.run = setup(**arguments) if setup is not None else wandb.init(**arguments)
        self.wandb = wandb

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_file(self, path: Path, folder: str) -> None:
        name = f"{self.run.id}-{(folder or 'files').replace('/', '-')}"
        artifact = self.wandb.Artifact(name, type="raymeta-output")
        artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact)

    def close(self) -> None:
        self.run.finish()


class TensorBoardBackend:
    """Event files under ``tracking.tensorboard_dir`` (RUN_DIR/tensorboard): a resumed run appends to the same
    folder. The config as text; no files (TensorBoard keeps none), only their paths as text."""

    def __init__(self, config: Config):
        import yaml

        tensorboardx = require("tensorboard")
        folder = Path(config.tracking.tensorboard_dir or Path(config.run_dir) / "tensorboard")
        # the file name holds the start time to the second: a session of its own gets a suffix of its own, so that
        # a resumed run started within the same second adds a file instead of writing over the last one's
        suffix = f".{os.getpid()}.{time.time_ns()}"
        self.writer = tensorboardx.SummaryWriter(logdir=str(folder), filename_suffix=suffix)
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config.to_dict(), sort_keys=False) + "```")
        self.folder = folder

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def log_file(self, path: Path, folder: str) -> None:
        self.writer.add_text(f"files/{folder or 'run'}", str(path))

    def close(self) -> None:
        self.writer.close()


class Tracker:
    """The trackers of one writing process (none when tracking is off): epochs and files to every one."""

    def __init__(self, backends: list):
        self.backends = backends

    def log_epoch(self, record) -> None:
        metrics = epoch_metrics(record)
        for backend in self.backends:
            backend.log_metrics(metrics, record.step)

    def log_files(self, paths: list[Path], folder: str = "") -> None:
        """Log each existing file of ``paths`` under ``folder`` (its place in the tracked run's files)."""
        for path in paths:
            found = location(path)
            if isinstance(found, StoragePath):  # on object storage: logged from a local copy
                if found.is_file():
                    with tempfile.TemporaryDirectory() as scratch:
                        local = Path(scratch) / found.name
                        local.write_bytes(found.read_bytes())
                        for backend in self.backends:
                            backend.log_file(local, folder)
            elif found.is_file():
                for backend in self.backends:
                    backend.log_file(found, folder)


@contextlib.contextmanager
def tracking(
    config: Config, *, mlflow_setup: Callable | None = None, wandb_setup: Callable | None = None
) -> Iterator[Tracker]:
    """The run's :class:`Tracker`, closed at the end (a tracker with no backend when tracking is off).

    ``mlflow_setup`` / ``wandb_setup``: Ray's ``setup_mlflow`` / ``setup_wandb`` (with their keyword arguments)
    where the caller runs in a Ray Train worker; None: the packages' own calls, for the single process."""
    options, backends = config.tracking, []
    try:
        if options.mlflow:
            backends.append(MlflowBackend(config, mlflow_setup))
        if options.wandb:
            backends.append(WandbBackend(config, wandb_setup))
        if options.tensorboard:
            backends.append(TensorBoardBackend(config))
        tracker = Tracker(backends)
        yield tracker
    finally:
        for backend in backends:
            backend.close()


def log_run_files(config: Config, paths: list[Path], folder: str = "") -> None:
    """Log files a stage wrote (result tables, the report, an exported network) to the run's tracked run,
    continued by its key; nothing when tracking is off."""
    if not config.tracking.enabled():
        return
    with tracking(resolve_tracking(config)) as tracker:
        tracker.log_files(paths, folder)
