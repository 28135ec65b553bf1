"""End to end through the command line: the debug job, and the errors a user sees on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import raymeta.stages.latency as latency
from raymeta.cli import main
from raymeta.config.loading import load_config
from raymeta.drivers.jobs import JOB_ENV, require_kept_output
from raymeta.errors import ConfigError
from raymeta.io.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DEBUG = str(ROOT / "jobs" / "debug.yaml")


@pytest.mark.slow
def test_debug_job_runs_end_to_end(tmp_path, capsys):
    assert main(["run", "--config", DEBUG, "--run-dir", str(tmp_path), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "total variation" in out and "unseen" in out
    page = (tmp_path / "report.html").read_text()  # run ends with the run's own report
    assert "Accuracy against" in page and '<script src="http' not in page
    tables = list((tmp_path / "results").glob("eval-*.parquet"))
    assert len(tables) == 1
    frame = pd.read_parquet(tables[0])
    assert list(frame.columns) == RESULT_COLUMNS and (frame["phase"] == "final").all()
    assert (frame["split"] == "test").all()
    assert (frame["train_time_s"] > 0).all()
    monitor = pd.read_parquet(tmp_path / "results" / "train-monitor.parquet")
    assert list(monitor.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS and (monitor["phase"] == "train").all()
    # then the health signals of the one metamorphic block (train.blocks=[last]): its α and, for its four tensors,
    # the reconstruction error and the loss balance (now and at W = 0)
    assert list(monitor.columns[len(RESULT_COLUMNS) :]) == ["alpha.stage3.block1"] + [
        f"{signal}.stages.2.1.{conv}.{kind}"
        for signal in ("rec", "balance", "balance_at_zero")
        for conv in ("conv1", "conv2")
        for kind in ("bias", "weight")
    ]
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
    # the `raymeta` script that installing the package puts beside this interpreter, not `python -m raymeta.cli`
    script = Path(sys.executable).parent / "raymeta"
    assert script.is_file(), f"no console script {script}: install the package (pip install -e .)"
    result = subprocess.run([str(script), "validate", "--config", DEBUG], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "# config hash d1944785f645" in result.stdout, result.stderr


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
    err = error_of(
        capsys,
        [
            "pretrain",
            "--config",
            DEBUG,
            "--run-dir",
            str(tmp_path),
            "data.name=fashion_mnist",
            f"data.data_dir={tmp_path / 'nowhere'}",
        ],
    )
    assert str(tmp_path / "nowhere") in err


@pytest.mark.parametrize(
    "argument, message",
    [("train.lr=-1", "train.lr"), ("eval.gammas=[1.5]", "eval.gammas"), ("train.blocks=[stage3.block0]", "projection")],
)
def test_bad_values_are_reported_without_a_traceback(tmp_path, capsys, argument, message):
    argv = ["run", "--config", DEBUG, "--run-dir", str(tmp_path), "--workers", "0", argument]
    err = error_of(capsys, argv)
    assert message in err and "Traceback" not in err


# ---- what users type: overrides anywhere, list and switch flags before an override ------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The stage functions the commands dispatch to, replaced by ones that record what they were given."""
    import raymeta.drivers.pipeline
    import raymeta.stages.baselines
    import raymeta.stages.deploy

    calls = {}
    monkeypatch.setattr(
        raymeta.drivers.pipeline, "run_pipeline", lambda config, progress, resume=None: calls.__setitem__("run", config)
    )
    monkeypatch.setattr(
        raymeta.stages.baselines,
        "run_baseline",
        lambda kind, config, progress, out=None: calls.__setitem__("baseline", config),
    )
    monkeypatch.setattr(
        raymeta.stages.deploy,
        "deploy",
        lambda run_dir, options, progress: calls.__setitem__("deploy", (run_dir, options)),
    )
    return calls


def test_overrides_stand_anywhere_among_the_flags(tmp_path, captured):
    argv = [
        "run",
        "--config",
        DEBUG,
        "train.lr=1e-3",
        "--workers",
        "0",
        "eval.samples=2",
        "--run-dir",
        str(tmp_path),
        "train.lr=2e-3",
    ]
    assert main(argv) == 0
    config = captured["run"]
    assert config.eval.samples == 2 and config.ray.workers == 0 and config.run_dir == str(tmp_path)
    assert config.train.lr == 2e-3  # the last of a key given twice, as typed
    assert load_config(tmp_path / "config.yaml") == config  # what the run folder records


def test_an_argument_that_is_no_override_is_refused_wherever_it_stands(tmp_path, capsys):
    assert main(["validate", "--config", DEBUG, "train.lr=1e-3", "--run-dir", str(tmp_path), "lr"]) == 2
    assert "argument 'lr' is not allowed: overrides are group.key=value" in capsys.readouterr().err


@pytest.mark.parametrize("gammas", [["0", "0.5"], ["0,0.5"], ["0,", "0.5"]])
def test_a_list_flag_followed_by_an_override_reads_both(tmp_path, captured, gammas):
    argv = [
        "baseline",
        "individual",
        "--run-dir",
        str(tmp_path),
        "--gammas",
        *gammas,
        "train.lr=1e-3",
        "--epochs",
        "2",
        "eval.samples=2",
    ]
    assert main(argv) == 0
    config = captured["baseline"]
    assert config.baseline.gammas == [0.0, 0.5] and config.baseline.epochs == 2
    assert config.train.lr == 1e-3 and config.eval.samples == 2


def test_overrides_after_a_list_flag_keep_their_place_among_the_others(tmp_path, captured):
    argv = ["baseline", "individual", "--run-dir", str(tmp_path), "train.lr=1e-3", "--gammas", "0", "train.lr=2e-3"]
    assert main(argv) == 0 and captured["baseline"].train.lr == 2e-3
    argv = [
        "baseline",
        "individual",
        "--run-dir",
        str(tmp_path),
        "--gammas",
        "0",
        "train.lr=2e-3",
        "--epochs",
        "1",
        "train.lr=3e-3",
    ]
    assert main(argv) == 0 and captured["baseline"].train.lr == 3e-3


def test_a_switch_flag_alone_means_true_and_an_override_after_it_is_no_value_of_it(tmp_path, captured):
    assert (
        main(["deploy", "--run-dir", str(tmp_path), "--max-macs", "20M", "--report-test", "deploy.candidates=7"]) == 0
    )
    run_dir, options = captured["deploy"]
    assert options.report_test is True and options.candidates == 7 and options.max_macs == "20M"
    assert main(["deploy", "--run-dir", str(tmp_path), "--max-macs", "20M", "--report-test", "false", "--no-onnx"]) == 0
    assert captured["deploy"][1].report_test is False and captured["deploy"][1].onnx is False


def test_a_deployment_is_a_config_group(tmp_path, captured):
    job = tmp_path / "job.yaml"
    job.write_text(f"run_dir: {tmp_path}\ndeploy:\n  max_params: 200k\n  gammas: [0, 0.5]\n  candidates: 9\n")
    assert main(["deploy", "--config", str(job), "--candidates", "5"]) == 0
    run_dir, options = captured["deploy"]
    assert run_dir == str(tmp_path) and options.budget() == ("params", "200k")
    assert options.gammas == [0.0, 0.5] and options.candidates == 5  # the flag over the YAML


@pytest.mark.parametrize(
    "argv, budget", [([], "none"), (["--max-macs", "1M", "--max-params", "1k"], "max_macs=1M, max_params=1k")]
)
def test_a_deployment_needs_exactly_one_budget(tmp_path, capsys, argv, budget):
    assert main(["deploy", "--run-dir", str(tmp_path), *argv]) == 2
    assert f"raymeta deploy needs exactly one budget, got {budget}: --max-macs" in capsys.readouterr().err


def test_an_export_needs_a_gamma(tmp_path, capsys):
    assert main(["export", "--run-dir", str(tmp_path)]) == 2
    assert "raymeta export needs a γ: --gamma 0.25" in capsys.readouterr().err


@pytest.fixture
def no_onnx_here(monkeypatch):
    """ONNX cannot be written here (as without the onnx and onnxscript packages); latency timed in a few passes."""
    import raymeta.stages.export

    monkeypatch.setattr(raymeta.stages.export, "onnx_available", lambda: False)
    for name, value in [("WARMUP_RUNS", 1), ("REPEATS", 3), ("MIN_SECONDS", 0.0), ("FINAL_SECONDS", 0.0)]:
        monkeypatch.setattr(latency, name, value)


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_a_skipped_onnx_export_is_said_in_the_log(per_block_run, tmp_path, capsys, no_onnx_here):
    out = tmp_path / "export"
    assert main(["export", "--run-dir", per_block_run.run_dir, "--gamma", "0.25", "-o", str(out)]) == 0
    assert "export: note — no ONNX file: it needs the onnx and onnxscript packages" in capsys.readouterr().out
    assert not (out / "network.onnx").exists()
    assert main(["export", "--run-dir", per_block_run.run_dir, "--gamma", "0.25", "-o", str(out), "--no-onnx"]) == 0
    assert "no ONNX file" not in capsys.readouterr().out  # turned off, not skipped


@pytest.mark.slow  # a whole command end to end (1-3 s): the fast tier stays under a minute
def test_a_deployment_records_the_config_it_ran_with_and_says_what_it_skipped(
    per_block_run, tmp_path, capsys, no_onnx_here
):
    out = tmp_path / "deploy"
    argv = [
        "deploy",
        "--run-dir",
        per_block_run.run_dir,
        "--max-params",
        "1G",
        "--gammas",
        "0",
        "0.5",
        "--candidates",
        "4",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    assert "deploy: note — no ONNX file: it needs the onnx and onnxscript packages" in capsys.readouterr().out
    recorded = load_config(out / "config.yaml")
    assert recorded.run_dir == per_block_run.run_dir and recorded.hash() == per_block_run.hash()
    assert (recorded.deploy.max_params, recorded.deploy.gammas, recorded.deploy.candidates) == ("1G", [0.0, 0.5], 4)
    assert recorded.deploy.output == str(out)


def test_a_run_dir_of_an_unknown_scheme_is_one_error_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(Path(__file__).parents[1] / "jobs/debug.yaml"), "--run-dir", "s4://b/r"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("raymeta: error: run_dir='s4://b/r' is not allowed")
    assert list(tmp_path.iterdir()) == []  # no local folder named s4:


@pytest.mark.parametrize(
    "command", [["baseline", "skip"], ["deploy", "--max-macs", "1M"], ["export", "--gamma", "0.5"]]
)
def test_commands_that_write_locally_refuse_an_object_storage_run_dir(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--run-dir", "s3://bucket/runs/x", "data.name=synthetic"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"raymeta {command[0]}'s run_dir s3://bucket/runs/x is not allowed" in error[0]
    assert list(tmp_path.iterdir()) == []


def test_a_submitted_job_refuses_a_relative_run_dir_before_it_starts(tmp_path, capsys, monkeypatch):
    # Ray's job supervisor sets this in a submitted job's driver; its working directory is Ray's copy of the code
    monkeypatch.setenv(JOB_ENV, json.dumps({"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_x1"}}))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(Path(__file__).parents[1] / "jobs/debug.yaml")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "runs as the Ray job raysubmit_x1" in error[0]
    assert f"run_dir='runs/debug' would be written to {tmp_path / 'runs/debug'}" in error[0]
    assert "--run-dir /shared/runs/NAME" in error[0] and "--run-dir s3://BUCKET/runs/NAME" in error[0]
    assert main(["report", "results", "--output", "page.html"]) == 2
    assert "--output='page.html' would be written to" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_a_submitted_job_may_write_to_absolute_paths_and_uris(monkeypatch):
    monkeypatch.setenv(JOB_ENV, "{}")
    require_kept_output({"run_dir": "/shared/runs/x", "ray.storage_path": "s3://bucket/ray", "--out": None})
    with pytest.raises(ConfigError, match=r"sweep.sweep_dir='sweeps/x' would be written to"):
        require_kept_output({"run_dir": "/shared/runs/x", "sweep.sweep_dir": "sweeps/x"})
    monkeypatch.delenv(JOB_ENV)
    require_kept_output({"run_dir": "runs/x"})  # not a job: a relative run_dir is the user's own folder
