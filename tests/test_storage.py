"""Run folders on object storage: a real S3 server (moto's, on 127.0.0.1) holds the files raymeta writes itself and
Ray Train's; a stopped run continues from the bucket; the report and read_tables read from it."""

import dataclasses

import pandas as pd
import pytest
import torch
from ray_fixtures import embedded_ray
from results_fixtures import rows
from s3_fixtures import s3_bucket, s3_keys

from raymeta.cli import main
from raymeta.config.loading import load_config
from raymeta.config.schema import RayConfig
from raymeta.drivers.distributed import ray_storage, run_name, train_distributed
from raymeta.drivers.space import load_space
from raymeta.drivers.sweep import FINISHED, run_sweep
from raymeta.errors import ConfigError
from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.files import (
    RunPaths,
    StoragePath,
    atomic_write,
    atomic_write_text,
    copy_file,
    location,
    remove_tree,
    require_local,
    save_config,
)
from raymeta.io.progress import Progress
from raymeta.io.results import ResultsError, read_tables, table_paths, write_table
from raymeta.stages.report import run_report
from raymeta.stages.train import train

QUIET = Progress(stream=open("/dev/null", "w"))


@pytest.fixture(scope="module")
def bucket():
    yield from s3_bucket()


def test_a_uri_is_a_storage_path_and_anything_else_a_local_one(tmp_path):
    paths = RunPaths("s3://bucket/runs//x/")
    assert paths.train_checkpoint == StoragePath("s3://bucket/runs/x/train/checkpoint.pt")
    assert (paths.root.name, str(paths.root.parent), paths.report.suffix) == ("x", "s3://bucket/runs", ".html")
    assert location(str(tmp_path)) == tmp_path and location("runs/s3:/x").parts == ("runs", "s3:", "x")
    with pytest.raises(ConfigError, match=r"'ftp://host/x' is not allowed: object storage is one of s3://, gs://"):
        location("ftp://host/x")
    with pytest.raises(ConfigError, match="names no bucket"):
        location("s3:///runs/x")
    with pytest.raises(ConfigError, match=r"raymeta deploy's run_dir s3://b/r is not allowed: .* a local path"):
        require_local("s3://b/r", "raymeta deploy's run_dir")


def test_files_on_s3_are_written_whole_listed_and_read_back(bucket):
    folder = location(f"{bucket}/unit")
    assert not folder.exists() and list(folder.rglob("*")) == []
    atomic_write_text(folder / "a" / "note.txt", "first")
    atomic_write_text(folder / "a" / "note.txt", "second")  # replaced, as a rename replaces
    assert (folder / "a" / "note.txt").read_text() == "second" and (folder / "a").is_dir()

    def fails(temporary):
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(folder / "a" / "note.txt", fails)
    with pytest.raises(RuntimeError):
        atomic_write(folder / "b.txt", fails)
    # the old file is intact, the new one absent, and no temporary object is left behind
    assert s3_keys(bucket) == ["unit/a/note.txt"]
    assert (folder / "a" / "note.txt").read_text() == "second" and not (folder / "b.txt").exists()
    (folder / "b.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (folder / "b.txt").read_bytes()
    remove_tree(folder / "a")
    assert s3_keys(bucket) == [] and not (folder / "a").exists()


def test_ray_gets_the_filesystem_raymeta_writes_through(bucket, tmp_path):
    import pyarrow.fs

    storage = ray_storage(location(f"{bucket}/ray"))
    assert storage["storage_path"] == f"{bucket.removeprefix('s3://')}/ray"
    assert isinstance(storage["storage_filesystem"], pyarrow.fs.S3FileSystem)
    assert ray_storage(tmp_path) == {"storage_path": str(tmp_path)}  # a folder: Ray opens it itself


@pytest.mark.slow
def test_result_tables_on_s3_are_read_by_folder_or_file_and_reported_there(bucket, capsys):
    first, second = rows("metamorphic", "a"), rows("individual", "b")
    folder = f"{bucket}/tables"
    written = [write_table(first, folder, name="a.parquet"), write_table(second, f"{folder}/more")]
    atomic_write_text(location(folder) / ".x.parquet.tmp.parquet", "a write in progress")  # hidden: skipped
    assert table_paths(folder) == sorted(written, key=str) and table_paths(str(written[0])) == written[:1]
    pd.testing.assert_frame_equal(
        read_tables(folder).sort_values("run_id", ignore_index=True),
        pd.concat([first, second], ignore_index=True),
        check_dtype=False,
    )
    with pytest.raises(ResultsError, match="glob patterns are for local paths"):
        table_paths(f"{folder}/*.parquet")
    with pytest.raises(ResultsError, match="holds no results table"):
        read_tables(f"{bucket}/unit")
    assert main(["report", folder, "--output", f"{bucket}/report.html", "--title", "from S3"]) == 0
    assert "2 table(s)" in capsys.readouterr().out
    assert "<title>from S3</title>" in location(f"{bucket}/report.html").read_text()


@pytest.fixture(scope="module")
def ray_cluster(bucket):
    # started after the S3 server: Ray's workers inherit its endpoint and credentials from this process
    yield from embedded_ray()


@pytest.mark.ray
def test_a_two_worker_run_on_s3_continues_from_the_bucket_and_is_reported_there(
    prepared_run, bucket, ray_cluster, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder (no local folder named s3:)
    overrides = ("train.epochs_per_stage=2", "train.steps_per_epoch=2")  # 2 stages × 2 epochs × 2 steps
    local = prepared_run(*overrides)
    run_dir = f"{bucket}/runs/a"
    for name in ("prior", "smoothed"):
        copy_file(getattr(RunPaths(local.run_dir), name), getattr(RunPaths(run_dir), name))
    config = dataclasses.replace(local, run_dir=run_dir, ray=RayConfig(workers=2, cpus_per_worker=1, timeout_s=60))
    paths = RunPaths(run_dir)

    # stopped after 3 of 4 epochs: the checkpoint, the monitor table and Ray Train's run are in the bucket
    assert train_distributed(config, stop_after_epochs=3, progress=QUIET) == paths.train_checkpoint
    stopped = MetamorphicCheckpoint.load(paths.train_checkpoint)
    assert stopped.state.step == 6 and not stopped.done
    keys = s3_keys(bucket)
    assert {"runs/a/train/checkpoint.pt", "runs/a/results/train-monitor.parquet"} <= set(keys)
    ray_run = f"runs/a/ray/{run_name(config)}/"
    assert any(key.startswith(ray_run) and key.endswith("/checkpoint.pt") for key in keys), keys

    # run again: it continues from the bucket (Ray Train's run found there, by name) and ends as the unbroken
    # single-process run of the same config. (A killed worker's restart from Ray's checkpoint is Ray's own path,
    # tested on a local folder in test_distributed.py: here it would double the test's time.)
    train_distributed(config, progress=QUIET)
    final = MetamorphicCheckpoint.load(paths.train_checkpoint)
    assert final.done and final.state.step == 8
    assert [r.global_epoch for r in final.state.history] == [1, 2, 3, 4]  # no epoch lost or repeated
    unbroken = MetamorphicCheckpoint.load(train(local, progress=QUIET))
    for name, value in unbroken.net_state.items():
        assert torch.allclose(value, final.net_state[name], rtol=1e-4, atol=1e-6), name

    # evaluate (the command, reading the run's config.yaml from the bucket) and report, into the bucket
    save_config(config, paths.config)
    assert main(["evaluate", "--run-dir", run_dir]) == 0
    run_report(config, QUIET)
    frame = read_tables(f"{run_dir}/results")
    assert set(frame["phase"]) == {"final", "train"} and set(frame["run_id"]) == {"a"}
    assert set(frame.loc[frame["phase"] == "final", "gamma"]) == set(config.eval.gammas)
    assert "<title>raymeta run a</title>" in paths.report.read_text()
    assert all(key.startswith(("runs/a/", "unit/", "tables/", "report.html")) for key in s3_keys(bucket))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ray
def test_a_two_trial_sweep_on_s3_lands_in_the_bucket(
    prepared_run, bucket, ray_cluster, tmp_path, tmp_path_factory, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    space_file = tmp_path_factory.mktemp("space") / "two.yaml"
    space_file.write_text(
        "num_samples: 2\nseed: 1\nscheduler: fifo\nparams:\n  train.lambda_rec: {loguniform: [0.1, 10]}\n"
    )
    local = prepared_run()
    run_dir = f"{bucket}/runs/s"
    for name in ("prior", "smoothed"):  # the sweep reuses the prior it finds in the bucket
        copy_file(getattr(RunPaths(local.run_dir), name), getattr(RunPaths(run_dir), name))
    base = dataclasses.replace(local, run_dir=run_dir)
    base = dataclasses.replace(
        base, sweep=dataclasses.replace(base.sweep, workers=1, cpus_per_worker=1, trial_cpus=1, verbose=0)
    )
    summary = run_sweep(load_space(space_file, base), base, QUIET)
    assert summary["sweep_dir"] == location(f"{run_dir}/sweeps/two")
    trials = summary["trials"]
    assert len(trials) == 2 and all(t["status"] == FINISHED for t in trials), trials

    keys = set(s3_keys(bucket))
    sweep = "runs/s/sweeps/two"
    assert {f"{sweep}/{name}" for name in ("sweep.yaml", "best.yaml", "report.html", "best/smoothed.pt")} <= keys
    for trial in trials:
        assert {
            f"{sweep}/results/{trial['trial_id']}.parquet",
            f"{sweep}/trials/{trial['trial_id']}/train/checkpoint.pt",
        } <= keys
    assert any(key.startswith(f"{sweep}/tune/") for key in keys)  # Tune's experiment
    frame = read_tables(f"{run_dir}/sweeps/two/results")
    assert set(frame["trial_id"]) == {t["trial_id"] for t in trials}
    best = load_config(summary["best_config"])  # a job config read from the bucket
    assert best.run_dir == f"{run_dir}/sweeps/two/best"
    assert best.train.lambda_rec == pytest.approx(summary["best"]["params"]["train.lambda_rec"])
    assert list(tmp_path.iterdir()) == []
