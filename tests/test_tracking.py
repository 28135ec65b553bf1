"""Experiment tracking: off by default and outside the config hash; a missing package is one error; a run logs
its config, every epoch's numbers and its files to an MLflow file store, W&B (offline) and TensorBoard event
files, and a resumed run continues the same tracked run."""

import dataclasses
import struct
from pathlib import Path

import pytest

from raymeta.config.loading import load_config
from raymeta.config.schema import Config
from raymeta.errors import ConfigError
from raymeta.io.artifacts import EpochRecord
from raymeta.io.progress import Progress
from raymeta.io.tracking import absolute_uri, epoch_metrics, resolve_tracking, tracked_run_key

QUIET = Progress(stream=open("/dev/null", "w"))
ALL_TRACKERS = ["tracking.mlflow=true", "tracking.wandb=true", "tracking.tensorboard=true"]


def test_tracking_is_off_by_default_and_outside_the_config_hash():
    assert Config().tracking.enabled() == []
    tracked = load_config(None, [*ALL_TRACKERS, "tracking.mlflow_uri=http://127.0.0.1:5000"])
    assert tracked.tracking.enabled() == ["mlflow", "wandb", "tensorboard"]
    assert tracked.hash() == Config().hash() and tracked.prior_hash() == Config().prior_hash()


@pytest.mark.parametrize("tracker, package", [("mlflow", "mlflow-skinny"), ("wandb", "wandb")])
def test_a_tracker_without_its_package_is_one_error_naming_the_extra(monkeypatch, tracker, package):
    monkeypatch.setitem(__import__("sys").modules, {"mlflow": "mlflow", "wandb": "wandb"}[tracker], None)
    with pytest.raises(
        ConfigError, match=rf"tracking\.{tracker}=true needs the {package} package.*raymeta\[tracking\]"
    ):
        resolve_tracking(load_config(None, [f"tracking.{tracker}=true", "tracking.mlflow_uri=http://127.0.0.1:5000"]))


def test_mlflow_needs_a_tracking_uri_and_local_ones_are_made_absolute(monkeypatch, tmp_path):
    monkeypatch.setattr("raymeta.io.tracking.require", lambda tracker: None)  # the places only: no import of mlflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"tracking\.mlflow=true needs a tracking URI: tracking\.mlflow_uri"):
        resolve_tracking(load_config(None, ["tracking.mlflow=true"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlruns")
    resolved = resolve_tracking(load_config(None, ["tracking.mlflow=true", "tracking.tensorboard_dir=tb"]))
    assert resolved.tracking.mlflow_uri == (tmp_path / "mlruns").as_uri()
    assert resolved.tracking.tensorboard_dir == str(tmp_path / "tb")
    assert [
        absolute_uri(u) for u in ("file:mlruns", "file:///abs/mlruns", "sqlite:///m.db", "sqlite:////abs/m.db")
    ] == [
        (tmp_path / "mlruns").as_uri(),
        "file:///abs/mlruns",
        f"sqlite:///{tmp_path / 'm.db'}",
        "sqlite:////abs/m.db",
    ]
    assert [absolute_uri(u) for u in ("http://127.0.0.1:5000", "databricks", "databricks://profile")] == [
        "http://127.0.0.1:5000",
        "databricks",
        "databricks://profile",
    ]


def test_an_epoch_becomes_named_metrics_without_nan():
    record = EpochRecord(
        stage=1,
        epoch=2,
        global_epoch=3,
        step=30,
        seconds=1.5,
        finished=0.0,
        losses={"loss": 1.25, "task": 1.0},
        monitor=[{"gamma": 0.0, "accuracy": 0.5}, {"gamma": 0.5, "accuracy": 0.25}],
        score=float("nan"),
        alphas={"stage3.block1": 0.75},
        rec_errors={"stages.2.1.conv1.weight": 0.5, "stages.2.1.conv2.weight": 0.125},
    )
    assert epoch_metrics(record) == {
        "loss/loss": 1.25,
        "loss/task": 1.0,
        "val_accuracy/gamma_0": 0.5,
        "val_accuracy/gamma_0.5": 0.25,
        "alpha/stage3.block1": 0.75,
        "rec/stage3.block1": 0.5,
        "stage": 2.0,
        "epoch_seconds": 1.5,
    }


def test_the_tracked_run_is_keyed_by_config_hash_and_run_folder(tmp_path):
    one = load_config(None, [f"run_dir={tmp_path / 'a'}"])
    assert tracked_run_key(one) == tracked_run_key(dataclasses.replace(one, device="auto"))
    assert tracked_run_key(one) != tracked_run_key(dataclasses.replace(one, run_dir=str(tmp_path / "b")))
    assert tracked_run_key(one).startswith(one.hash())


# ---- reading back what the trackers wrote -----------------------------------------------------------------------


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files under ``folder`` (TFRecord framing: length, CRC, an Event, CRC)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def mlflow_runs(uri: str, experiment: str = "raymeta"):
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


def artifact_paths(client, run_id: str, folder: str | None = None) -> set[str]:
    paths = set()
    for item in client.list_artifacts(run_id, folder):
        paths |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return paths


@pytest.fixture
def tracker_stores(monkeypatch, tmp_path):
    """An MLflow file store and W&B offline, as a user without servers would set them up."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return f"file://{tmp_path / 'mlruns'}"


@pytest.mark.slow  # two short trainings, an evaluation and a report, each tracked three ways: ~15 s
def test_a_single_process_run_tracks_to_mlflow_wandb_and_tensorboard(prepared_run, tracker_stores):
    from raymeta.stages.evaluate import run_evaluate
    from raymeta.stages.report import run_report
    from raymeta.stages.train import train

    config = prepared_run(*ALL_TRACKERS, f"tracking.mlflow_uri={tracker_stores}")
    train(config, progress=QUIET, stop_after_epochs=1)
    train(config, progress=QUIET)  # resumed: the same tracked run goes on
    table = run_evaluate(config, QUIET)
    report = run_report(config, QUIET)

    client, runs = mlflow_runs(tracker_stores)
    assert len(runs) == 1, "a resumed run continues its tracked run"
    run = runs[0]
    assert run.info.run_name == f"{Path(config.run_dir).name}-{config.hash()}"
    assert run.data.tags["raymeta.config_hash"] == config.hash()
    assert run.data.params["train.lr"] == str(config.train.lr) and run.data.params["model.depth"] == "14"
    history = client.get_metric_history(run.info.run_id, "loss/loss")
    assert [m.step for m in history] == [3, 6]  # one per epoch, at the global step, across both sessions
    for name in ("val_accuracy/gamma_0", "val_accuracy/gamma_0.5", "alpha/stage2.block1", "rec/stage3.block1"):
        assert name in run.data.metrics, name
    assert artifact_paths(client, run.info.run_id) == {
        "results/train-monitor.parquet",
        f"results/{table.name}",
        report.name,
    }

    offline = sorted((Path(config.run_dir) / "wandb").glob(f"offline-run-*-{tracked_run_key(config)}"))
    # one run id for the two training sessions, the evaluation's table and the report (a folder per session,
    # named by its start to the second: sessions within one second share one)
    assert offline, "W&B wrote no offline run folder"
    logged = b"".join(path.read_bytes() for folder in offline for path in folder.glob("*.wandb"))
    # the metrics' names; not the report's: W&B's service records a logged file's artifact asynchronously, and
    # once in CI its name was not yet in the .wandb log when the run closed (MLflow's files are checked above)
    for name in (b"loss/task", b"val_accuracy/gamma_0", b"alpha/stage3.block1"):
        assert name in logged, name

    scalars = tensorboard_scalars(Path(config.run_dir) / "tensorboard")
    assert [step for step, _ in scalars["loss/loss"]] == [3, 6]
    assert {"val_accuracy/gamma_0", "alpha/stage2.block1", "rec/stage2.block1", "score"} <= set(scalars)
    assert scalars["loss/loss"][-1][1] == pytest.approx(history[-1].value, rel=1e-6)


@pytest.fixture(scope="module")
def ray_cluster():
    from ray_fixtures import embedded_ray

    yield from embedded_ray()


@pytest.mark.ray  # one 2-worker Ray Train run: ~25 s
def test_ray_train_rank_zero_continues_the_tracked_run_of_the_single_process(prepared_run, tracker_stores, ray_cluster):
    from raymeta.config.schema import RayConfig
    from raymeta.drivers.distributed import train_distributed
    from raymeta.stages.train import train

    config = prepared_run(*ALL_TRACKERS, f"tracking.mlflow_uri={tracker_stores}")
    train(config, progress=QUIET, stop_after_epochs=1)  # the first epoch in this process, the second on Ray
    on_ray = dataclasses.replace(config, ray=RayConfig(workers=2, cpus_per_worker=1, timeout_s=60, max_failures=0))
    train_distributed(on_ray, progress=QUIET)

    client, runs = mlflow_runs(tracker_stores)
    assert len(runs) == 1, "the Ray Train run continues the tracked run (setup_mlflow on rank 0 only)"
    history = client.get_metric_history(runs[0].info.run_id, "loss/loss")
    assert [m.step for m in history] == [3, 6]  # rank 0 alone logs: one point per epoch
    assert "alpha/stage3.block1" in runs[0].data.metrics
    assert artifact_paths(client, runs[0].info.run_id) == {"results/train-monitor.parquet"}  # from rank 0
    scalars = tensorboard_scalars(Path(config.run_dir) / "tensorboard")
    assert [step for step, _ in scalars["loss/loss"]] == [3, 6]
    # W&B through setup_wandb on rank 0, offline: WANDB_MODE reached the workers, which Ray started before it was set
    offline = sorted((Path(config.run_dir) / "wandb").glob(f"offline-run-*-{tracked_run_key(config)}/*.wandb"))
    assert offline and b"alpha/stage3.block1" in offline[-1].read_bytes()


def test_reports_to_tune_get_the_tracker_names_of_a_run():
    from raymeta.io.tracking import report_metrics

    report = {"acc@0.25": 0.5, "task": 1.0, "loss": 1.5, "score": 0.5, "global_epoch": 2}
    assert report_metrics(report) == {
        "val_accuracy/gamma_0.25": 0.5,
        "loss/task": 1.0,
        "loss/loss": 1.5,
        "score": 0.5,
        "global_epoch": 2,
    }


@pytest.mark.slow  # imports Ray Tune's integrations, and with them mlflow and wandb: ~5 s
def test_a_sweep_tracks_its_trials_through_tunes_logger_callbacks(tmp_path):
    from raymeta.drivers.tune_tracking import MLflowTrials, WandbTrials, tracking_callbacks

    base = load_config(None, [*ALL_TRACKERS, "tracking.mlflow_experiment=sweeps", "tracking.wandb_project=p"])
    mlflow_callback, wandb_callback = tracking_callbacks(base, tmp_path / "lambdas")
    assert isinstance(mlflow_callback, MLflowTrials) and isinstance(wandb_callback, WandbTrials)
    assert mlflow_callback.experiment_name == "sweeps" and mlflow_callback.tags["raymeta.config_hash"] == base.hash()
    assert wandb_callback.project == "p" and wandb_callback.group == "lambdas"
    assert wandb_callback.kwargs["dir"] == str(tmp_path / "lambdas")
    assert tracking_callbacks(load_config(None, ["tracking.tensorboard=true"]), tmp_path) == []


def test_a_command_asking_for_a_tracker_it_cannot_use_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from raymeta.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["run", "--config", "jobs/debug.yaml", "--workers", "0", "--run-dir", str(tmp_path), "--mlflow"]) == 2
    assert "tracking.mlflow=true needs a tracking URI" in capsys.readouterr().err
    assert not (tmp_path / "prior.pt").exists()
