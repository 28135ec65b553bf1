"""The scripts of benchmarks/ and reports/ run and write what they say they write.

Each runs as a user runs it, ``python SCRIPT …`` in a subprocess from the repository root, on the tiny per-block
run of conftest.py or on the tables committed under reports/, with the smallest arguments it takes. The checks
are that it finishes and that its output is there, not its figures: the scripts use the library's public
functions, and these tests are what tells when a change of the library breaks one of them.
"""

import dataclasses
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ray_fixtures import RAY_TEST_ENV

from raymeta.io.files import RunPaths, save_config

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


def run_script(script: str, *args, timeout: float = 300, env: dict | None = None) -> str:
    """``python script args…`` from the repository root; its stdout, after checking that it succeeded. ``env``
    adds variables to the environment (None: removes one)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    environment = {key: value for key, value in environment.items() if value is not None}
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{script} {' '.join(map(str, args))} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def trained(per_block_run, tmp_path_factory) -> Path:
    """A copy of the tiny trained run (two metamorphic blocks, per-block γ) named like a benchmark seed's folder,
    with the config.yaml that ``raymeta run`` writes: scripts write into the runs they are given."""
    target = tmp_path_factory.mktemp("runs") / "seed0"
    shutil.copytree(per_block_run.run_dir, target)
    save_config(dataclasses.replace(per_block_run, run_dir=str(target)), RunPaths(target).config)
    return target


# ---- reports/ ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_build_writes_every_page_whose_tables_are_committed(tmp_path):
    out = run_script("reports/build.py", "--out", tmp_path)
    for name in ("fashion-bench", "fashion-ablation", "deploy-fashion"):
        page = (tmp_path / f"{name}.html").read_text()
        assert page.startswith("<!DOCTYPE html>") and 'id="fig-accuracy"' in page, name
    assert "digits-resnet20: skipped" in out and "digits-resnet20/make.sh" in out  # says why, and what makes them
    assert "recipe-protocol: skipped" in out and "recipe-protocol/make.sh" in out  # until its tables are committed


def test_build_refuses_an_unknown_page_and_names_the_known_ones(tmp_path, capsys):
    build = runpy.run_path(str(REPORTS / "build.py"))
    assert build["main"](["fashion-benhc", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "fashion-benhc" in err and "fashion-bench" in err and not list(tmp_path.iterdir())


def test_every_path_a_make_script_names_exists():
    """The make scripts take an hour or more (they are not run here); the scripts and jobs they call are there."""
    scripts = sorted(REPORTS.glob("*/make.sh"))
    assert len(scripts) == 7
    for script in scripts:
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
        words = script.read_text().replace("'", " ").replace('"', " ").split()
        named = [w.rsplit("=", 1)[-1] for w in words if w.endswith((".py", ".yaml"))]  # VAR=path: the path
        assert named, script
        for path in named:
            assert (ROOT / path).is_file(), f"{script.relative_to(ROOT)} runs {path}, which does not exist"


@pytest.mark.slow
def test_block_check(trained):
    out = run_script("reports/digits-resnet20/block_check.py", trained)
    assert "| none | – |" in out and "| stage2.block1 |" in out and "| stage3.block1 |" in out


@pytest.mark.slow
def test_lead_check(trained):
    out = run_script("reports/fashion-ablation/lead_check.py", trained)
    assert "α per block:" in out and "every α = 0" in out and "‖∂L/∂INR‖" in out


@pytest.mark.slow
def test_ablation_table_of_the_committed_sweeps():
    out = run_script(
        "reports/fashion-ablation/ablation_table.py",
        REPORTS / "fashion-ablation" / "seed0",
        REPORTS / "fashion-ablation" / "seed1",
    )
    assert "| recipe (all on) |" in out and "| NeuMeta (all off, M = 1) |" in out


@pytest.mark.slow
def test_ablation_mechanism(trained, tmp_path):
    """A sweep folder whose results are the committed seed-0 sweep's and whose recipe trial is the tiny run."""
    shutil.copytree(REPORTS / "fashion-ablation" / "seed0", tmp_path / "results")
    shutil.copytree(trained, tmp_path / "trials" / "80fd9_00001")
    out = run_script("reports/fashion-ablation/ablation_mechanism.py", tmp_path)
    assert "| recipe | 80fd9_00001 |" in out
    assert "| neumeta |" not in out  # trials without a checkpoint are left out


@pytest.mark.slow
def test_bench_table(trained, tmp_path):
    """On copies of the committed tables, less the rows the script itself writes (the prior's, the paper rows)."""
    bench, ablation = tmp_path / "bench", tmp_path / "ablation"
    shutil.copytree(REPORTS / "fashion-bench", bench)
    shutil.copytree(REPORTS / "fashion-ablation", ablation)
    (bench / "seed0" / "prior.parquet").unlink()
    shutil.rmtree(bench / "paper-rows")
    out = run_script("reports/fashion-bench/bench_table.py", bench, ablation, "--runs", trained.parent)
    assert (bench / "seed0" / "prior.parquet").is_file()
    assert sorted(p.name for p in (bench / "paper-rows").iterdir()) == ["seed0.parquet", "seed1.parquet"]
    assert "## Test accuracy" in out and "| metamorphic |" in out and "## Targets" in out
    assert "## Mechanism" in out and "| seed0 |" in out


@pytest.mark.slow
def test_recipe_arms(tmp_path, capsys):
    """make.sh at its smoke scale (one step per arm on synthetic data), then arms.py again: it skips what is done."""
    runs = tmp_path / "arms"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    environment.update({"RECIPE_ARMS_SMOKE": "1", "RUNS": str(runs), "ARMS": "A B"})
    result = subprocess.run(
        ["bash", str(REPORTS / "recipe-arms" / "make.sh")], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    table = (runs / "table.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    assert list(rows) == ["A", "B", "D", "E", "INR256x8"]
    assert rows["A"][2] == "1" and rows["D"][2] == "not trained"  # one step; an arm not asked for is listed
    assert rows["A"][-2] != "–" and rows["B"][-2] == "–"  # B has no regulariser: no balance
    arms = runpy.run_path(str(REPORTS / "recipe-arms" / "arms.py"))
    arms["main"]([str(runs), "--smoke", "--only", "A"])
    assert "arm A: finished already, skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_recipe_protocol_table(trained, tmp_path):
    """The tiny run as a seed's recipe run (its prior beside it) and the committed ablation sweep as its sweep."""
    runs, tables = tmp_path / "runs" / "seed0", tmp_path / "tables" / "seed0"
    shutil.copytree(trained, runs / "recipe")
    (runs / "prior").mkdir()
    shutil.copy(trained / "smoothed.pt", runs / "prior" / "smoothed.pt")
    shutil.copytree(trained / "results", tables / "recipe")
    shutil.copytree(REPORTS / "fashion-ablation" / "seed0", tables / "ablation")
    out = run_script("reports/recipe-protocol/protocol_table.py", tables.parent, "--runs", runs.parent)
    assert (tables / "prior" / "prior.parquet").is_file()
    assert "## Test accuracy" in out and "| prior |" in out and "## Targets" in out
    mechanism = [line for line in out.splitlines() if line.startswith("| seed0/recipe | 6 |")]
    assert len(mechanism) == 1 and "stage2.block1" in mechanism[0] and "stage3.block1" in mechanism[0]
    assert len([line for line in out.splitlines() if line.startswith("| seed0/recipe | ")]) == 1 + 2  # + 2 epochs
    assert "## Table 1, leave-one-out" in out and "| − α scaling | -3.5 (seen γ) |" in out


@pytest.mark.slow  # ~1.5 s of writing and reading tables: the fast tier stays under a minute
def test_full_table_of_seed_tables(tmp_path, capsys):
    """On two seeds' tables of a few rows (no training): every row and target is printed, the costs per seed."""
    from raymeta.io.results import RunIdentity, result_frame, write_table

    def rows(seed, method, run_id, gammas, accuracy, seconds, calibration=None):
        identity = RunIdentity(f"seed{seed}{run_id}", method, "h", "fashion_mnist", "resnet20-16-32-64", (0.0, 0.5))
        extra = {} if calibration is None else {"calibration": calibration}
        data = [
            {"gamma": g, "samples": 5, "accuracy": accuracy + 0.01 * seed, "loss": 0.5, "params": 1, "macs": 1} | extra
            for g in gammas
        ]
        return result_frame(data, identity, stage=4, epoch=10, split="test", train_time_s=seconds)

    grid = [-0.25, 0.0, 0.25, 0.5, 0.625, 0.75]
    for seed in (0, 1):
        frames = [
            rows(seed, "metamorphic", "", grid, 0.86, 300.0),
            rows(seed, "metamorphic", "", grid, 0.87, 300.0, calibration=512),  # eval.calibration: a row of its own
            rows(seed, "metamorphic-inr-off", "/inr-off", grid, 0.80, 300.0),
            rows(seed, "merge", "/merge", grid, 0.78, 0.0),
            rows(seed, "merge", "/merge", grid, 0.77, 0.0, calibration=512),
            rows(seed, "slimmable", "/slimmable", grid[1:], 0.85, 301.0),
        ]
        for gamma in (0.25, 0.5):  # a network per γ: their costs add up
            frames.append(rows(seed, "individual", f"/individual/gamma={gamma:g}", [gamma], 0.87, 100.0))
            frames.append(rows(seed, "prune-l1+ft-equal", f"/prune-l1+ft-equal/gamma={gamma:g}", [gamma], 0.85, 150.0))
        for index, frame in enumerate(frames):
            write_table(frame, tmp_path / f"seed{seed}", name=f"t{index}.parquet")
    table = runpy.run_path(str(REPORTS / "fashion-full" / "full_table.py"))
    table["main"](tmp_path)
    out = capsys.readouterr().out
    assert "| γ=-0.25 † | γ=0 | γ=0.25 | γ=0.5 | γ=0.625 † | γ=0.75 † | training cost, s per seed |" in out
    assert "| raymeta (one network), uncalibrated (`metamorphic`) | 86.50 ± 0.71 |" in out and "| 300 |" in out
    assert "calibrated on 512 unlabelled training images (`metamorphic+calibrated`) | 87.50 ± 0.71 |" in out
    assert "(`individual`) |  |  | 87.50 ± 0.71 | 87.50 ± 0.71 |  |  | 200 |" in out
    # the targets judge the calibrated network, against the calibrated merge
    assert "| γ=0.5 above merge+calibrated by more than the seed noise | +10.00 (need ≥ +0.71) | yes |" in out
    assert "| γ=0.25 ahead of pruning + fine-tune at equal cost | +2.00 (need ≥ +0.00) | yes |" in out
    assert "| γ=0.75 † within 2.5 of Individual | – (need ≥ -2.50) | – |" in out  # no Individual there


# ---- benchmarks/ ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_time():
    out = run_script(
        "benchmarks/eval_time.py", "--repeats", 1, "--threads", 1, "--config", "jobs/debug.yaml", "eval.samples=3"
    )
    assert "rows equal: accuracy identical" in out and "speed-up:" in out


@pytest.mark.slow
def test_step_time():
    out = run_script("benchmarks/step_time.py", "--settings", "tiny", "--steps", 1, "--threads", 1)
    assert "matmul peak" in out and "tiny fp32: step" in out and "inr_backward" in out and "outside phases" in out
    assert "step / floor" in out


@pytest.mark.slow
def test_deploy_search(trained, tmp_path):
    markdown = tmp_path / "fronts.md"
    run_script(
        "benchmarks/deploy_search.py",
        "--run",
        f"tiny={trained}",
        "--budget",
        "macs=1G",
        "--candidates",
        6,
        "--paired",
        "--markdown",
        markdown,
    )
    text = markdown.read_text()
    assert "### tiny: validation front by MACs" in text and "### tiny: paired test noise" in text
    assert (trained / "deploy" / "front" / "pareto.parquet").is_file()


@pytest.mark.slow
def test_loader_throughput(tmp_path):
    from test_data import write_fashion_mnist

    write_fashion_mnist(tmp_path / "fashion", num_train=160, num_test=200, gz=True)  # every class in test
    out = run_script(
        "benchmarks/loader_throughput.py",
        *("--fashion-dir", tmp_path / "fashion", "--images", 128, "--size", 16, "--batch", 32, "--repeats", 1),
        *("--workers", 0, 1, "--folder", tmp_path / "images"),
    )  # without --ray-data: a local Ray and its pipeline would cost this test ~15 s more
    assert "wrote 128 training PNGs of 16x16" in out and "in memory (EpochBatches)" in out
    assert "streamed, in the training process" in out and "streamed, 1 DataLoader worker(s)" in out
    assert len(list((tmp_path / "images" / "train").rglob("*.png"))) == 128


@pytest.mark.slow
@pytest.mark.ray
def test_ray_overhead(tmp_path):
    out = run_script(
        "benchmarks/ray_overhead.py",
        "--config",
        "jobs/debug.yaml",
        "--limit-train",
        0,
        "--epochs",
        2,
        "--threads",
        1,
        "--workers",
        0,
        1,
        "--run-root",
        tmp_path,
        timeout=600,
        env={**RAY_TEST_ENV, "RAY_ADDRESS": None},
    )
    assert "single process" in out and "Ray, 1 worker" in out and "Ray, 2 workers" not in out
    phases = out[out.index("Ray's fixed cost") :].splitlines()
    assert "ray.init" in phases[1] and phases[2].startswith("Ray, 1 worker") and len(phases[2].split()) == 9


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_overhead(tmp_path):
    out = run_script(
        "benchmarks/sweep_overhead.py",
        "--config",
        "jobs/debug.yaml",
        "--trials",
        1,
        "--epochs",
        1,
        "--threads",
        1,
        "--run-root",
        tmp_path,
        timeout=600,
        env={**RAY_TEST_ENV, "RAY_ADDRESS": None},
    )
    assert "median overhead per trial" in out


def test_quickstart_time_splits_a_run_by_its_driver_lines():
    # the script runs the quickstart for minutes; its split of the driver's progress lines is what can go wrong
    import importlib.util

    spec = importlib.util.spec_from_file_location("quickstart_time", ROOT / "benchmarks" / "quickstart_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = [
        "[    0.2s] pretrain: 15 epochs",
        "[   20.0s] pretrain: done",
        "[   21.0s] smooth: permuting",
        "[   28.5s] train: Ray Train with 2 worker(s)",
        "(RayTrainWorker pid=7) [    3.0s] evaluate: not a driver line",
        "[  100.0s] evaluate: test split",
        "[  104.0s] report: runs/x/report.html",
    ]
    stages = module.stage_times(lines, 110.0)
    assert stages == pytest.approx({"pretrain": 21.0, "smooth": 7.5, "train": 71.5, "evaluate": 4.0, "report": 6.0})
    with pytest.raises(SystemExit, match="stage"):
        module.stage_times(lines[:3], 30.0)
