"""The distributed driver: the same training step as :func:`raymeta.stages.train.train`, run by Ray Train workers.

Every worker builds the same network from the same checkpoint, draws the same M compression ratios per
step (a pure function of seed and step), runs only its own configurations r, r+N, … on its own batches,
and sums the gradients with one all-reduce before the identical update. Rank 0 alone writes files; every
rank reports each epoch to Ray Train (a barrier), rank 0 with the checkpoint. A failed worker group is
restarted from the latest checkpoint (``FailureConfig``); running the same command again continues a
stopped run from its storage path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import tempfile
from pathlib import Path

import torch

from raymeta.config.loading import config_from_dict
from raymeta.config.schema import Config, RayConfig
from raymeta.errors import CheckpointError, ConfigError, RaymetaError
from raymeta.io.artifacts import MetamorphicCheckpoint, SmoothedCheckpoint
from raymeta.io.files import RunPaths, StoragePath, absolute, copy_file, location, remove_tree
from raymeta.io.progress import Progress
from raymeta.io.tracking import Tracker, resolve_tracking, tracking
from raymeta.stages.collective import Collective
from raymeta.stages.monitor import existing_checkpoint, save_epoch
from raymeta.stages.train import StepHook, run_training

CHECKPOINT_FILE = "checkpoint.pt"
QUIET_RAY = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
"""Environment for an embedded Ray: no usage statistics, no migration warnings meant for Train V1 users, no
watcher of cloud-instance preemption (there is no cloud instance to lose), and Train's controller polling its
workers every 0.5 s instead of 2 s: it notices the end of training that much sooner (the shut-down after the last
epoch took 1.0 s instead of 4.1 s: benchmarks/RESULTS.md)."""


class TorchCollective(Collective):
    """Collectives over the process group that Ray Train's ``TorchTrainer`` set up (gloo or NCCL)."""

    def __init__(self, rank: int, world_size: int, device: torch.device):
        import torch.distributed as dist

        self.dist = dist
        self.rank = rank
        self.world_size = world_size
        # NCCL moves only CUDA tensors; gloo only CPU ones.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.to(self.device)
        self.dist.all_reduce(moved, op=self.dist.ReduceOp.SUM)
        return moved.to(tensor.device)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        moved = tensor.to(self.device)
        self.dist.broadcast(moved, src=0)
        return moved.to(tensor.device)

    def all_gather_object(self, value) -> list:
        gathered = [None] * self.world_size
        self.dist.all_gather_object(gathered, value)
        return gathered


def _quiet_train_logs(level: str) -> None:
    """No INFO line from every rank at every report (Ray 2.60 logs it under a logger named by file path)."""
    logging.getLogger("ray.train").setLevel(level)
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:
        return
    logging.getLogger(train_context.__file__).setLevel(level)


def train_worker(loop_config: dict) -> None:
    """Ray Train's per-worker function."""
    import ray.train
    import ray.train.torch

    _quiet_train_logs(loop_config["log_level"])
    # Relative paths of the config (data.data_dir) mean what they mean to the command that started the run, not to
    # the folder Ray starts its workers in. On a node without that folder the worker stays where Ray put it (a
    # job's working_dir). Changing data_dir itself would change the config hash.
    if Path(loop_config["working_dir"]).is_dir():
        os.chdir(loop_config["working_dir"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(loop_config["threads"])
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    config = dataclasses.replace(config_from_dict(loop_config["config"]), device=str(device), threads=None)
    collective = TorchCollective(rank, world_size, device)
    progress = Progress() if rank == 0 else (lambda message: None)
    paths = RunPaths(config.run_dir)

    checkpoint, restored = None, ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            checkpoint = MetamorphicCheckpoint.load_to_resume(Path(folder) / CHECKPOINT_FILE, expect_hash=config.hash())
        progress(f"train: restored the latest Ray Train checkpoint ({restored.path})")
    elif loop_config["resume_path"]:
        checkpoint = MetamorphicCheckpoint.load_to_resume(loop_config["resume_path"], expect_hash=config.hash())
        progress(f"train: resuming from {loop_config['resume_path']}")

    with _rank_zero_tracking(config, rank) as tracker:

        def on_epoch_end(make_checkpoint, record) -> None:
            metrics = record.metrics()  # numbers only: what Ray Train (and so Tune) is told of every epoch
            if rank != 0:
                ray.train.report(metrics, checkpoint=None)
                return
            tracker.log_epoch(record)
            with tempfile.TemporaryDirectory() as folder:
                # written once here, then copied to the run folder (which may be on object storage)
                save_epoch(config, make_checkpoint(), local_copy=Path(folder) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

        run_training(
            config,
            resume_from=checkpoint,
            on_epoch_end=on_epoch_end,
            progress=progress,
            collective=collective,
            stop_after_epochs=loop_config["stop_after_epochs"],
            step_hook=loop_config["step_hook"],
        )
        tracker.log_files([paths.results / "train-monitor.parquet"], "results")


def _rank_zero_tracking(config: Config, rank: int):
    """Rank 0's trackers, through Ray's ``setup_mlflow`` / ``setup_wandb``; the other ranks track nothing."""
    if rank != 0 or not config.tracking.enabled():
        return contextlib.nullcontext(Tracker([]))
    mlflow_setup = wandb_setup = None
    if config.tracking.mlflow:
        from ray.air.integrations.mlflow import setup_mlflow as mlflow_setup
    if config.tracking.wandb:
        from ray.air.integrations.wandb import setup_wandb as wandb_setup
    return tracking(config, mlflow_setup=mlflow_setup, wandb_setup=wandb_setup)


TRACKING_ENV_PREFIXES = ("MLFLOW_", "WANDB_")
SECRET_MARKERS = ("KEY", "TOKEN", "PASSWORD", "SECRET")


def tracking_environment() -> dict[str, str]:
    """The trackers' settings in this process's environment (``MLFLOW_TRACKING_URI``, ``WANDB_MODE``, …), for
    the workers, which may run on other nodes. Secrets (API keys, tokens, passwords) are not passed on: they
    belong in each node's environment (or the cluster's runtime environment), not in a job's task specs."""
    return {
        key: value
        for key, value in os.environ.items()
        if key.startswith(TRACKING_ENV_PREFIXES) and not any(marker in key for marker in SECRET_MARKERS)
    }


@contextlib.contextmanager
def ray_session(address: str | None, progress: Progress, label: str):
    """Ray for one command: the one already initialised, else the cluster at ``address`` (or ``RAY_ADDRESS``),
    else an embedded local Ray, which is shut down at the end (never a cluster found by chance)."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        progress(f"{label}: joining the Ray cluster at {address}")
        ray.init(address=address)
        yield
        return
    for key, value in QUIET_RAY.items():
        os.environ.setdefault(key, value)
    ray.init(address="local", configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def run_name(config: Config) -> str:
    """The Ray Train run name: the same configuration continues the same run."""
    return f"train-{config.hash()}"


def _plan_workers(options: RayConfig, configs_per_step: int, resources: dict) -> tuple[int, float]:
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if options.gpus_per_worker > 0 and gpus < options.gpus_per_worker:
        raise ConfigError(
            f"ray.gpus_per_worker={options.gpus_per_worker:g} (--gpus-per-worker), but the Ray cluster has {gpus:g} GPU(s): use a cluster with GPUs or --gpus-per-worker 0"
        )
    workers = options.workers
    if workers is None:
        if options.gpus_per_worker > 0:
            fit = int(gpus // options.gpus_per_worker)
        else:
            fit = int(cpus // (options.cpus_per_worker or 1))
        workers = max(1, min(configs_per_step, fit))
    if workers < 1:
        raise ConfigError(
            f"ray.workers={workers} (--workers) is not allowed for Ray Train: use 1 or more (0 trains in this process)"
        )
    cpus_per_worker = options.cpus_per_worker
    if cpus_per_worker is None:
        cpus_per_worker = max(1.0, math.floor(cpus / workers)) if cpus >= workers else cpus / workers
    if cpus_per_worker <= 0:
        raise ConfigError(
            f"ray.cpus_per_worker={cpus_per_worker} (--cpus-per-worker) is not allowed: use a positive number"
        )
    if options.gpus_per_worker == 0 and workers * cpus_per_worker > cpus + 1e-9:
        raise ConfigError(f"{workers} workers × {cpus_per_worker:g} CPUs need more than the cluster's {cpus:g} CPUs")
    return workers, cpus_per_worker


def train_distributed(
    config: Config,
    *,
    resume: bool | None = None,
    stop_after_epochs: int | None = None,
    progress: Progress | None = None,
    callbacks: list | None = None,
    step_hook: StepHook | None = None,
) -> Path | StoragePath:
    """Train on Ray Train as ``config.ray`` says; returns the run's checkpoint path (``RUN_DIR/train/checkpoint.pt``).

    ``callbacks`` are Ray Train ``UserCallback``s of the controller (a Tune trial passes Tune's
    ``TuneReportCallback``, which forwards every epoch's report to Tune). ``step_hook(rank, step)`` runs in every
    worker after every step (tests inject failures with it; Ray pickles it to the workers).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    options = config.ray
    progress = progress or Progress()
    config = resolve_tracking(dataclasses.replace(config, run_dir=absolute(config.run_dir)))
    paths = RunPaths(config.run_dir)
    SmoothedCheckpoint.load(paths.smoothed)  # fail here, not in the workers
    # what can be refused without a cluster is refused before starting one
    _plan_workers(options, config.train.configs_per_step, {"CPU": 1e9, "GPU": 1e9})
    storage = location(absolute(options.storage_path or paths.root / "ray"))
    name = run_name(config)
    if resume is False:
        remove_tree(storage / name)
    ray_run_exists = (storage / name).is_dir()
    checkpoint = None if (resume and ray_run_exists) else existing_checkpoint(config, resume)
    if checkpoint is not None and checkpoint.done:
        progress(f"train: {paths.train_checkpoint} is finished ({checkpoint.state.step} steps); nothing to do")
        return paths.train_checkpoint

    with ray_session(options.address, progress, "train"):
        workers, cpus_per_worker = _plan_workers(options, config.train.configs_per_step, ray.cluster_resources())
        use_gpu = options.gpus_per_worker > 0
        resources = {"CPU": cpus_per_worker, **({"GPU": options.gpus_per_worker} if use_gpu else {})}
        progress(
            f"train: Ray Train with {workers} worker(s) × {cpus_per_worker:g} CPU"
            + (f" + {options.gpus_per_worker:g} GPU" if use_gpu else "")
            + f"; run {name} under {storage}"
        )
        loop_config = {
            "config": config.to_dict(),
            "resume_path": str(paths.train_checkpoint) if checkpoint is not None else None,
            "stop_after_epochs": stop_after_epochs,
            "step_hook": step_hook,
            "threads": config.threads or max(1, int(cpus_per_worker)),
            "use_gpu": use_gpu,
            "log_level": options.log_level,
            "working_dir": os.getcwd(),
        }
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=loop_config,
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=options.timeout_s),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(
                name=name,
                **ray_storage(storage),
                failure_config=FailureConfig(max_failures=options.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                logging_config=LoggingConfig(log_level=options.log_level),
                callbacks=list(callbacks or []),
                # rank 0's progress lines print once (not also through Train's logger)
                worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", **tracking_environment()}},
            ),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as error:
            raise RaymetaError(
                f"distributed training failed (the last checkpoint is kept; run again to continue): {error}"
            ) from None
        _copy_final_checkpoint(result.checkpoint, paths.train_checkpoint)
    progress(f"train: checkpoint {paths.train_checkpoint}")
    return paths.train_checkpoint


def ray_storage(storage: Path | StoragePath) -> dict:
    """``RunConfig``'s storage (Train's or Tune's): a local folder, or the object store's filesystem (the one
    raymeta's own files use) with the path inside it."""
    if isinstance(storage, StoragePath):
        return {"storage_path": storage.fs_path, "storage_filesystem": storage.filesystem}
    return {"storage_path": str(storage)}


def _copy_final_checkpoint(checkpoint, target: Path | StoragePath) -> None:
    """Rank 0 may have run on another node: bring the last reported checkpoint into the run folder."""
    if checkpoint is None:
        if not target.is_file():
            raise CheckpointError(f"the distributed run reported no checkpoint and {target} does not exist")
        return
    with checkpoint.as_directory() as folder:
        source = Path(folder) / CHECKPOINT_FILE
        if not target.is_file() or source.read_bytes() != target.read_bytes():
            copy_file(source, target)
