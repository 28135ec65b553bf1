"""Sweeps on Ray Tune, end to end: trials train on Ray Train, land in the results schema, pick a best config
that ``raymeta train`` accepts, and an interrupted sweep continues without running finished trials again."""

import dataclasses
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from ray_fixtures import RAY_TEST_ENV, embedded_ray
from results_fixtures import rows
from test_safe_loading import Payload

from raymeta.cli import main
from raymeta.config.loading import load_config
from raymeta.drivers.space import load_space
from raymeta.drivers.sweep import FINISHED, STOPPED, best_trial, final_score, rank_trials, run_sweep
from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.io.results import read_tables

QUIET = Progress(stream=open(os.devnull, "w"))
SPACE = """
search: random
num_samples: 3
seed: 1
scheduler: {name: asha, grace_period: 1}
params:
  train.lambda_rec: {loguniform: [0.1, 10.0]}
  train.lr: {choice: [0.001, 0.003]}
"""


def with_sweep(base, **settings):
    """The job config with these sweep: settings."""
    return dataclasses.replace(base, sweep=dataclasses.replace(base.sweep, **settings))


@pytest.fixture(scope="module")
def ray_cluster():
    yield from embedded_ray()


@pytest.mark.ray
def test_tiny_sweep_end_to_end(prepared_run, ray_cluster, tmp_path):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(SPACE)
    base = prepared_run("train.epochs_per_stage=2")
    space = load_space(space_file, base)
    summary = run_sweep(space, with_sweep(base, workers=1, cpus_per_worker=1, trial_cpus=1, verbose=0), QUIET)
    folder = summary["sweep_dir"]
    assert folder == Path(base.run_dir).resolve() / "sweeps" / "tiny"

    # three trials, each trained to the end (2 stages × 2 epochs) and evaluated; ASHA saw every epoch
    trials = summary["trials"]
    assert len(trials) == 3 and len({t["trial_id"] for t in trials}) == 3
    assert all(t["status"] == FINISHED and t["epochs"] == 4 for t in trials), trials
    for trial in trials:
        reports = [json.loads(line) for line in (folder / "tune" / trial["trial_id"] / "result.json").open()]
        # Ray Train forwards each epoch's report to Tune (TuneReportCallback); the last one can lose the race with
        # the trial's own final report, which carries the last epoch's metrics too (seen in CI): every epoch
        # reaches the scheduler, in order, through one or the other
        epochs = [r["global_epoch"] for r in reports if not r.get("done")]
        assert epochs == [1, 2, 3, 4][: len(epochs)] and len(epochs) >= 3
        assert reports[-1]["done"] and reports[-1]["global_epoch"] == 4
        assert all("score" in r and "acc@0.25" in r for r in reports)

    # every trial's rows in the results schema, with its id, status and parameters
    frame = read_tables(folder / "results")
    final = frame[frame["phase"] == "final"]
    assert sorted(final["trial_id"].unique()) == sorted(t["trial_id"] for t in trials)
    # each trial evaluated on the validation split (which ranks it) and on the test split (reported)
    assert len(final) == 3 * 2 * len(base.eval.gammas) and set(final["trial_status"]) == {FINISHED}
    assert final.groupby(["trial_id", "split"]).size().tolist() == [len(base.eval.gammas)] * 6
    monitor = frame[frame["phase"] == "train"]
    assert len(monitor) == 3 * 4 * 3 and set(monitor["split"]) == {"validation"}  # 4 epochs × 3 seen γ
    for trial in trials:
        rows = final[final["trial_id"] == trial["trial_id"]]
        assert rows["param.train.lambda_rec"].nunique() == 1
        assert rows["param.train.lambda_rec"].iloc[0] == pytest.approx(trial["params"]["train.lambda_rec"])
        config = load_config(RunPaths(str(folder / "trials" / trial["trial_id"])).config)
        assert config.train.lr == trial["params"]["train.lr"]

    # the best config is a complete job config whose folder already holds the prior
    best = load_config(summary["best_config"])
    chosen = summary["best"]
    assert best.train.lambda_rec == pytest.approx(chosen["params"]["train.lambda_rec"])
    assert chosen["score"] == max(t["score"] for t in trials)
    validation = final[(final["trial_id"] == chosen["trial_id"]) & (final["split"] == "validation") & final["seen"]]
    assert chosen["score"] == pytest.approx(validation["accuracy"].mean())
    assert "validation accuracy over the seen γ" in Path(summary["best_config"]).read_text()
    assert main(["train", "--config", str(summary["best_config"]), "--workers", "0"]) == 0
    assert RunPaths(best.run_dir).train_checkpoint.is_file()

    page = (folder / "report.html").read_text()
    assert "Tune trials" in page and all(t["trial_id"] in page for t in trials)


def _sweep_command(run_dir: Path) -> list[str]:
    # the job YAML alone holds the search space and every sweep setting (its sweep: group)
    return [sys.executable, "-m", "raymeta", "sweep", "--config", "jobs/debug_sweep.yaml", "--run-dir", str(run_dir)]


def _stop_leftovers(marker: str) -> None:
    """Ray processes of a killed driver (its dashboard agents can outlive it for a while)."""
    for _ in range(20):
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        if not found:
            return
        time.sleep(0.5)
    subprocess.run(["pkill", "-9", "-f", marker])


@pytest.mark.ray
def test_a_killed_sweep_continues_without_running_finished_trials_again(tmp_path):
    root = Path(__file__).resolve().parent.parent
    run_dir = tmp_path / "run"
    temp_dir = tempfile.mkdtemp(prefix="rm-sweep-")  # short: Ray's socket paths live under it
    env = {**os.environ, **RAY_TEST_ENV, "RAY_TMPDIR": temp_dir}
    results = run_dir / "sweeps" / "lambdas" / "results"
    try:
        first = subprocess.Popen(
            _sweep_command(run_dir),
            cwd=root,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 240
        while not list(results.glob("*.parquet")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert first.poll() is None, "the sweep ended before it could be killed"
        (done,) = list(results.glob("*.parquet"))
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        _stop_leftovers(temp_dir)
        trial_id = done.name.removesuffix(".parquet")
        checkpoint = run_dir / "sweeps" / "lambdas" / "trials" / trial_id / "train" / "checkpoint.pt"
        before = (done.read_bytes(), checkpoint.stat().st_mtime_ns)
        # Tune's own state is pickled: a crafted file in the folder would run code if it were restored
        marker = tmp_path / "ran"
        with open(run_dir / "sweeps" / "lambdas" / "tune" / "tuner.pkl", "wb") as handle:
            pickle.dump(Payload(marker), handle)

        second = subprocess.run(_sweep_command(run_dir), cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "continuing the sweep" in second.stdout
        # the finished trial was not trained or evaluated again; the other one ran to the end
        assert (done.read_bytes(), checkpoint.stat().st_mtime_ns) == before
        assert f"sweep: trial {trial_id}: " not in second.stdout + second.stderr
        frame = read_tables(results)
        final = frame[frame["phase"] == "final"]
        assert final["trial_id"].nunique() == 2 and set(final["trial_status"]) == {FINISHED}
        assert (run_dir / "sweeps" / "lambdas" / "best.yaml").is_file()
        assert not marker.exists(), "continuing the sweep unpickled Tune's state"
    finally:
        _stop_leftovers(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_sweep_over_another_space_in_the_same_folder_is_refused(prepared_run, tmp_path):
    base = prepared_run()
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(SPACE)
    second.write_text(SPACE.replace("seed: 1", "seed: 2"))
    folder = tmp_path / "sweep"
    folder.mkdir()
    space = load_space(first, base)
    (folder / "sweep.yaml").write_text(json.dumps({"space": space.fingerprint(), "config_hash": base.hash()}))
    with pytest.raises(Exception, match="holds a sweep started with another search space: use --restart"):
        run_sweep(load_space(second, base), with_sweep(base, sweep_dir=str(folder)), QUIET)
    with pytest.raises(Exception, match="--resume: .* holds no sweep"):
        run_sweep(space, with_sweep(base, sweep_dir=str(tmp_path / "none")), QUIET, resume=True)


@pytest.mark.ray
def test_optuna_search_runs_trials_and_tracks_each(prepared_run, ray_cluster, tmp_path, monkeypatch):
    pytest.importorskip("optuna")  # a test extra: installed by .ci/run
    from test_tracking import mlflow_runs, tensorboard_scalars

    space_file = tmp_path / "optuna.yaml"
    space_file.write_text(
        "search: optuna\nnum_samples: 2\nscheduler: fifo\n"
        "params:\n  train.lambda_reg: {loguniform: [1.0e-6, 1.0e-2]}\n"
        "  train.configs_per_step: {choice: [1, 2]}\n"
    )
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # an MLflow file store, as without a server
    store = f"file://{tmp_path / 'mlruns'}"
    base = prepared_run(
        "train.blocks=[last]", "tracking.mlflow=true", "tracking.tensorboard=true", f"tracking.mlflow_uri={store}"
    )
    summary = run_sweep(load_space(space_file, base), with_sweep(base, verbose=0), QUIET)
    trials = summary["trials"]
    assert len(trials) == 2 and all(t["status"] == FINISHED for t in trials)
    assert all(1e-6 <= t["params"]["train.lambda_reg"] <= 1e-2 for t in trials)
    final = read_tables(summary["sweep_dir"] / "results").query("phase == 'final'")
    assert set(final["param.train.configs_per_step"]) <= {1, 2}

    # one MLflow run per trial (Tune's MLflowLoggerCallback; the trials' own training does not track again)
    client, runs = mlflow_runs(store)
    assert sorted(run.info.run_name for run in runs) == sorted(t["trial_id"] for t in trials)
    for run in runs:
        assert {"score", "val_accuracy/gamma_0", "loss/task"} <= set(run.data.metrics)
        assert "train.lambda_reg" in run.data.params
        assert run.data.tags["raymeta.config_hash"] == base.hash()
    for trial in trials:  # each trial's training wrote its own TensorBoard events
        scalars = tensorboard_scalars(summary["sweep_dir"] / "trials" / trial["trial_id"] / "tensorboard")
        assert "loss/loss" in scalars and "val_accuracy/gamma_0" in scalars


@pytest.mark.ray
def test_an_errored_trial_is_reported_and_the_others_still_count(prepared_run, ray_cluster, tmp_path):
    space_file = tmp_path / "errors.yaml"
    # M = 64 micro-batches of 32 need more than the 512 training images: that trial fails when it starts training
    space_file.write_text("search: grid\nscheduler: fifo\nparams:\n  train.configs_per_step: {grid: [1, 64]}\n")
    base = prepared_run("train.blocks=[last]")
    summary = run_sweep(load_space(space_file, base), with_sweep(base, verbose=0, trial_retries=0), QUIET)
    by_m = {t["params"]["train.configs_per_step"]: t for t in summary["trials"]}
    assert by_m[1]["status"] == FINISHED and by_m[64]["status"] == "errored"
    assert "lower either" in by_m[64]["error"] or "training examples" in by_m[64]["error"]
    assert summary["best"]["trial_id"] == by_m[1]["trial_id"]
    assert load_config(summary["best_config"]).train.configs_per_step == 1


def _trial(trial_id: str, validation: float, test: float, status: str = FINISHED) -> dict:
    """A trial as the sweep summarises it, from final rows made by hand on both splits."""
    frame = pd.concat(
        [
            rows("metamorphic", trial_id, split="validation", accuracy=validation),
            rows("metamorphic", trial_id, split="test", accuracy=test),
            rows("metamorphic", trial_id, phase="train", gammas=[0.0], accuracy=0.99),
        ],
        ignore_index=True,
    )
    return {
        "trial_id": trial_id,
        "status": status,
        "params": {},
        "epochs": 10,
        "score": final_score(frame),
        "test_score": final_score(frame, "test"),
    }


def test_the_best_trial_is_chosen_on_validation_even_when_its_test_score_is_worse():
    # the fixture's seen γ are 0, 0.25 and 0.5: accuracy − 0.1·γ, so the mean over them is accuracy − 0.025
    a, b = _trial("a", validation=0.80, test=0.50), _trial("b", validation=0.70, test=0.95)
    assert a["score"] == pytest.approx(0.775) and a["test_score"] == pytest.approx(0.475)
    assert b["score"] == pytest.approx(0.675) and b["test_score"] == pytest.approx(0.925)
    assert [t["trial_id"] for t in rank_trials([b, a])] == ["a", "b"]
    assert best_trial([b, a])["trial_id"] == "a"
    # a better-scoring trial that did not finish is listed after the finished ones and never chosen
    c = _trial("c", validation=0.90, test=0.90, status=STOPPED)
    assert [t["trial_id"] for t in rank_trials([c, b, a])] == ["a", "b", "c"] and best_trial([c, b])["trial_id"] == "b"
    # a trial without validation rows (a table from before the validation split) has no score: never chosen
    old = rows("metamorphic", "old", accuracy=0.99)
    assert math.isnan(final_score(old)) and final_score(old, "test") == pytest.approx(0.965)
    assert best_trial([{"trial_id": "old", "status": FINISHED, "score": final_score(old)}]) is None


def test_a_sweep_without_a_validation_split_is_refused(prepared_run, tmp_path):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(SPACE)
    base = prepared_run("data.validation_fraction=0")
    with pytest.raises(ConfigError, match="data.validation_fraction=0 is not allowed for a sweep"):
        run_sweep(load_space(space_file, base), with_sweep(base, sweep_dir=str(tmp_path / "sweep")), QUIET)
    assert not (tmp_path / "sweep").exists()  # refused before anything was written or started
