"""The distributed driver: the same training step as :func:`raymeta.train.train`, run by Ray Train workers.

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
import shutil
import tempfile
from pathlib import Path

import torch

from raymeta.checkpoint import load_checkpoint
from raymeta.config import Config, config_from_dict
from raymeta.errors import CheckpointError, ConfigError, RaymetaError
from raymeta.runtime import Progress, RunPaths
from raymeta.train import (Collective, FaultInjector, check_same_config, existing_checkpoint, run_training,
                           save_epoch)

CHECKPOINT_FILE = "checkpoint.pt"
QUIET_RAY = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}
"""Environment for an embedded Ray: no usage statistics, no migration warnings meant for Train V1 users, no
watcher of cloud-instance preemption (there is no cloud instance to lose)."""


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


def _epoch_metrics(record: dict) -> dict:
    """What each epoch reports to Ray Train (and so to Tune): numbers only."""
    return {key: value for key, value in record.items() if isinstance(value, (int, float))}


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
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(loop_config["threads"])
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    config = dataclasses.replace(config_from_dict(loop_config["config"]), device=str(device), threads=None)
    collective = TorchCollective(rank, world_size, device)
    progress = Progress() if rank == 0 else (lambda message: None)
    paths = RunPaths(config.run_dir)

    payload, restored = None, ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            source = Path(folder) / CHECKPOINT_FILE
            payload = load_checkpoint(source, kind="metamorphic", required=("net_state", "state"))
        check_same_config(payload, config, source)
        progress(f"train: restored the latest Ray Train checkpoint ({restored.path})")
    elif loop_config["resume_path"]:
        payload = load_checkpoint(loop_config["resume_path"], kind="metamorphic", required=("net_state", "state"))
        progress(f"train: resuming from {loop_config['resume_path']}")

    def on_epoch_end(make_payload, record) -> None:
        metrics = _epoch_metrics(record)
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        save_epoch(config, make_payload())
        with tempfile.TemporaryDirectory() as folder:
            shutil.copy(paths.train_checkpoint, Path(folder) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    run_training(config, payload=payload, on_epoch_end=on_epoch_end, progress=progress, collective=collective,
                 stop_after_epochs=loop_config["stop_after_epochs"], fault=FaultInjector(loop_config["fault"]))


@dataclasses.dataclass
class DistributedOptions:
    """How ``raymeta train`` runs on Ray (the command-line flags of the same names)."""

    workers: int | None = None
    """Ray Train workers; None: as many as the cluster allows, at most M (the configurations per step).
    More than M cut each configuration's micro-batch into slices."""
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None
    """None: the cluster's CPUs shared evenly over the workers (at least 1)."""
    address: str | None = None
    """An existing cluster to join; None: ``RAY_ADDRESS`` if set, else an embedded local Ray."""
    storage_path: str | None = None
    """Where Ray Train keeps the run's checkpoints; None: ``RUN_DIR/ray``."""
    max_failures: int = 3
    """Worker-group failures to recover from (each restarts from the latest checkpoint)."""
    timeout_s: int = 1800
    """Seconds a collective may wait before the process group gives up."""
    log_level: str = "WARNING"
    """Ray Train's own log level (INFO shows every report of every worker)."""


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


def _plan_workers(options: DistributedOptions, configs_per_step: int, resources: dict) -> tuple[int, float]:
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if options.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker={options.gpus_per_worker} is not allowed: use 0 or more")
    if options.gpus_per_worker > 0 and gpus < options.gpus_per_worker:
        raise ConfigError(f"--gpus-per-worker={options.gpus_per_worker}, but the Ray cluster has {gpus:g} GPU(s)")
    workers = options.workers
    if workers is None:
        if options.gpus_per_worker > 0:
            fit = int(gpus // options.gpus_per_worker)
        else:
            fit = int(cpus // (options.cpus_per_worker or 1))
        workers = max(1, min(configs_per_step, fit))
    if workers < 1:
        raise ConfigError(f"--workers={workers} is not allowed for Ray Train: use 1 or more (0 trains in this process)")
    cpus_per_worker = options.cpus_per_worker
    if cpus_per_worker is None:
        cpus_per_worker = max(1.0, math.floor(cpus / workers)) if cpus >= workers else cpus / workers
    if cpus_per_worker <= 0:
        raise ConfigError(f"--cpus-per-worker={cpus_per_worker} is not allowed: use a positive number")
    if options.gpus_per_worker == 0 and workers * cpus_per_worker > cpus + 1e-9:
        raise ConfigError(f"{workers} workers × {cpus_per_worker:g} CPUs need more than the cluster's {cpus:g} CPUs")
    return workers, cpus_per_worker


def train_distributed(config: Config, options: DistributedOptions | None = None, *, resume: bool | None = None,
                      stop_after_epochs: int | None = None, progress: Progress | None = None,
                      callbacks: list | None = None) -> Path:
    """Train on Ray Train; returns the run's checkpoint path (``RUN_DIR/train/checkpoint.pt``).

    ``callbacks`` are Ray Train ``UserCallback``s of the controller (a Tune trial passes Tune's
    ``TuneReportCallback``, which forwards every epoch's report to Tune).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    options = options or DistributedOptions()
    progress = progress or Progress()
    config = dataclasses.replace(config, run_dir=str(Path(config.run_dir).resolve()))
    paths = RunPaths(config.run_dir)
    load_checkpoint(paths.smoothed, kind="smoothed", required=("arch", "state_dict"))  # fail here, not in workers
    # what can be refused without a cluster is refused before starting one
    _plan_workers(options, config.train.configs_per_step, {"CPU": 1e9, "GPU": 1e9})
    storage = Path(options.storage_path or paths.root / "ray").resolve()
    name = run_name(config)
    if resume is False:
        shutil.rmtree(storage / name, ignore_errors=True)
    ray_run_exists = (storage / name).is_dir()
    payload = None if (resume and ray_run_exists) else existing_checkpoint(config, resume)
    if payload is not None and payload.get("done"):
        progress(f"train: {paths.train_checkpoint} is finished ({payload['state']['step']} steps); nothing to do")
        return paths.train_checkpoint

    with ray_session(options.address, progress, "train"):
        workers, cpus_per_worker = _plan_workers(options, config.train.configs_per_step, ray.cluster_resources())
        use_gpu = options.gpus_per_worker > 0
        resources = {"CPU": cpus_per_worker, **({"GPU": options.gpus_per_worker} if use_gpu else {})}
        progress(f"train: Ray Train with {workers} worker(s) × {cpus_per_worker:g} CPU"
                 + (f" + {options.gpus_per_worker:g} GPU" if use_gpu else "") + f"; run {name} under {storage}")
        loop_config = {
            "config": config.to_dict(),
            "resume_path": str(paths.train_checkpoint) if payload is not None else None,
            "stop_after_epochs": stop_after_epochs,
            "fault": os.environ.get("RAYMETA_TEST_FAULT"),
            "threads": config.threads or max(1, int(cpus_per_worker)),
            "use_gpu": use_gpu,
            "log_level": options.log_level,
        }
        trainer = TorchTrainer(
            train_worker,
            train_loop_config=loop_config,
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=options.timeout_s),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(name=name, storage_path=str(storage),
                                 failure_config=FailureConfig(max_failures=options.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2),
                                 logging_config=LoggingConfig(log_level=options.log_level),
                                 callbacks=list(callbacks or []),
                                 # rank 0's progress lines print once (not also through Train's logger)
                                 worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as error:
            raise RaymetaError(f"distributed training failed (the last checkpoint is kept; run again to "
                               f"continue): {error}") from None
        _copy_final_checkpoint(result.checkpoint, paths.train_checkpoint)
    progress(f"train: checkpoint {paths.train_checkpoint}")
    return paths.train_checkpoint


def _copy_final_checkpoint(checkpoint, target: Path) -> None:
    """Rank 0 may have run on another node: bring the last reported checkpoint into the run folder."""
    if checkpoint is None:
        if not target.is_file():
            raise CheckpointError(f"the distributed run reported no checkpoint and {target} does not exist")
        return
    with checkpoint.as_directory() as folder:
        source = Path(folder) / CHECKPOINT_FILE
        if not target.is_file() or source.read_bytes() != target.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".pt.tmp")
            shutil.copy(source, tmp)
            os.replace(tmp, target)
