"""The whole pipeline, and training on whichever driver the configuration asks for."""

from __future__ import annotations

from pathlib import Path

from raymeta.config.schema import Config
from raymeta.drivers.distributed import train_distributed
from raymeta.io.progress import Progress
from raymeta.io.tracking import resolve_tracking
from raymeta.stages.evaluate import run_evaluate
from raymeta.stages.pretrain import pretrain
from raymeta.stages.report import run_report
from raymeta.stages.smooth import smooth
from raymeta.stages.train import train


def train_stage(config: Config, progress: Progress, *, resume: bool | None = None) -> Path:
    """Train the hypernetwork: in this process when ``ray.workers`` is 0, else on Ray Train."""
    if config.ray.workers == 0:
        return train(config, resume=resume, progress=progress)
    return train_distributed(config, resume=resume, progress=progress)


def run_pipeline(config: Config, progress: Progress, *, resume: bool | None = None) -> Path:
    """pretrain → smooth → train → evaluate (test split) → report; returns the report's path. Each stage reuses
    or continues what an earlier run of the same configuration left (``resume`` as for pretrain and train)."""
    config = resolve_tracking(config)  # a tracker that cannot work is refused before the prior is trained
    pretrain(config, progress, resume=resume)
    smooth(config, progress)
    train_stage(config, progress, resume=resume)
    run_evaluate(config, progress)
    return run_report(config, progress)
