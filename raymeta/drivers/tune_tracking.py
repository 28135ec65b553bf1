"""A sweep's trackers: Tune's logger callbacks (MLflow, W&B), one tracked run per trial, under raymeta's metric
names (:func:`raymeta.io.tracking.report_metrics`). A module of its own because Ray's integrations import the
trackers' packages: only a sweep that tracks imports it."""

from __future__ import annotations

from pathlib import Path

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback

from raymeta.config.schema import Config
from raymeta.io.tracking import HASH_TAG, report_metrics, require


class MLflowTrials(MLflowLoggerCallback):
    """Tune's MLflow logger, each epoch's report under the names a training run's epochs have in MLflow."""

    def log_trial_result(self, iteration, trial, result):
        super().log_trial_result(iteration, trial, report_metrics(result))


class WandbTrials(WandbLoggerCallback):
    """Tune's W&B logger, each epoch's report under the names a training run's epochs have in W&B."""

    def log_trial_result(self, iteration, trial, result):
        super().log_trial_result(iteration, trial, report_metrics(result))


def tracking_callbacks(base: Config, folder: Path) -> list:
    """Tune's logger callbacks for the trackers the job config switches on: one tracked run per trial, named by
    the trial, with its sampled parameters and every epoch's report (score, validation accuracy at each
    monitored γ, loss parts), in MLflow's experiment (tagged with the job's config hash and the sweep folder) or
    W&B's project (grouped by the sweep folder's name, its files under it). TensorBoard needs none: each trial's
    training writes its own event files (SWEEP_DIR/trials/<trial>/tensorboard, continued with the sweep)."""
    options, callbacks = base.tracking, []
    if options.mlflow:
        require("mlflow")
        callbacks.append(
            MLflowTrials(
                tracking_uri=options.mlflow_uri,
                experiment_name=options.mlflow_experiment,
                tags={HASH_TAG: base.hash(), "raymeta.sweep_dir": str(folder)},
            )
        )
    if options.wandb:
        require("wandb")
        callbacks.append(
            WandbTrials(project=options.wandb_project, group=folder.name, entity=options.wandb_entity, dir=str(folder))
        )
    return callbacks
