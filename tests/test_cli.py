"""End to end through the command line: the debug job, and the errors a user sees on bad input."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from raymeta.cli import main
from raymeta.io.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DEBUG = str(ROOT / "jobs" / "debug.yaml")


@pytest.mark.slow
def test_debug_job_runs_end_to_end(tmp_path, capsys):
    assert main(["run", "--config", DEBUG, "--run-dir", str(tmp_path), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "total variation" in out and "unseen" in out
    page = (tmp_path / "report.html").read_text()  # run ends with the run's own report
    assert "Accuracy against" in page and "<script src=\"http" not in page
    tables = list((tmp_path / "results").glob("eval-*.parquet"))
    assert len(tables) == 1
    frame = pd.read_parquet(tables[0])
    assert list(frame.columns) == RESULT_COLUMNS and (frame["phase"] == "final").all()
    assert (frame["split"] == "test").all()
    assert (frame["train_time_s"] > 0).all()
    monitor = pd.read_parquet(tmp_path / "results" / "train-monitor.parquet")
    assert list(monitor.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS and (monitor["phase"] == "train").all()
    # then the health signals of the one metamorphic block (train.blocks=[last]): its α and its four tensors
    assert list(monitor.columns[len(RESULT_COLUMNS):]) == ["alpha.stage3.block1"] + [
        f"rec.stages.2.1.{conv}.{kind}" for conv in ("conv1", "conv2") for kind in ("bias", "weight")]
    assert (monitor["split"] == "validation").all()
    assert monitor["epoch"].tolist() == [1, 1] and (monitor["samples"] == 1).all()
    assert frame["gamma"].tolist() == [-0.25, 0.0, 0.25, 0.5, 0.75]
    assert frame["seen"].tolist() == [False, True, True, True, False]
    assert frame["params"].is_monotonic_decreasing and frame["macs"].is_monotonic_decreasing
    assert frame["config_hash"].nunique() == 1 and (frame["accuracy"] > 0.5).all()
    # evaluating again writes a second table and never touches the first
    before = tables[0].read_bytes()
    assert main(["evaluate", "--config", DEBUG, "--run-dir", str(tmp_path), "eval.samples=3"]) == 0
    assert len(list((tmp_path / "results").glob("eval-*.parquet"))) == 2 and tables[0].read_bytes() == before
    (second,) = set((tmp_path / "results").glob("eval-*.parquet")) - set(tables)
    # --split validation: the same network on the validation split, rows saying so
    capsys.readouterr()
    assert main(["evaluate", "--config", DEBUG, "--run-dir", str(tmp_path), "--split", "validation"]) == 0
    assert "51 validation images" in capsys.readouterr().out
    (latest,) = set((tmp_path / "results").glob("eval-*.parquet")) - set(tables) - {second}
    validation = pd.read_parquet(latest)
    assert (validation["split"] == "validation").all() and validation["gamma"].tolist() == frame["gamma"].tolist()
    assert not validation["loss"].equals(frame["loss"])
    # without --config, evaluate takes the run's own config.yaml, and never rewrites it
    saved = (tmp_path / "config.yaml").read_text()
    assert main(["evaluate", "--run-dir", str(tmp_path)]) == 0
    (own,) = set((tmp_path / "results").glob("eval-*.parquet")) - set(tables) - {second, latest}
    assert pd.read_parquet(own)["gamma"].tolist() == frame["gamma"].tolist()  # the job's eval.gammas, not the defaults
    assert (tmp_path / "config.yaml").read_text() == saved
    own.unlink()
    # running the job again reuses the finished prior and training, and only evaluates anew
    capsys.readouterr()
    assert main(["run", "--config", DEBUG, "--run-dir", str(tmp_path), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "reusing the finished prior" in out and "resuming" in out and "epoch 1/1" not in out
    assert len(list((tmp_path / "results").glob("eval-*.parquet"))) == 4


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "raymeta.cli", "validate", "--config", DEBUG],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "config hash" in result.stdout


def error_of(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    err = error_of(capsys, ["evaluate", "--config", DEBUG, "--run-dir", str(tmp_path)])
    assert "checkpoint" in err and str(tmp_path) in err and "Traceback" not in err


def test_corrupt_checkpoint_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    err = error_of(capsys, ["evaluate", "--config", DEBUG, "--run-dir", str(tmp_path)])
    assert "corrupt" in err and "checkpoint.pt" in err


def test_missing_data_folder_is_one_clear_error(tmp_path, capsys):
    err = error_of(capsys, ["pretrain", "--config", DEBUG, "--run-dir", str(tmp_path), "data.name=fashion_mnist",
                            f"data.data_dir={tmp_path / 'nowhere'}"])
    assert str(tmp_path / "nowhere") in err


@pytest.mark.parametrize("argument, message", [("train.lr=-1", "train.lr"), ("eval.gammas=[1.5]", "eval.gammas"),
                                               ("train.blocks=[stage3.block0]", "projection")])
def test_bad_values_are_reported_without_a_traceback(tmp_path, capsys, argument, message):
    argv = ["run", "--config", DEBUG, "--run-dir", str(tmp_path), "--workers", "0", argument]
    err = error_of(capsys, argv)
    assert message in err and "Traceback" not in err
