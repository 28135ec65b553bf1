"""A real Ray cluster on 127.0.0.1 (`ray start --head`), the debug job and a one-trial sweep submitted with
jobs/submit.sh.

The job runs pretrain → smooth → train on Ray Train across the cluster → evaluate → report from the shipped
working dir, and must leave its results table; the cluster is stopped and its temp dir removed after.
The runtime environment here is the working dir alone: jobs/runtime_env.yaml's pip step would make Ray copy
this test's whole virtualenv (about 6 GB with torch's CUDA wheels) for every run.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from raymeta.evaluate import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    bin_dir = str(Path(sys.executable).parent)
    marker = f"raymeta-test-cluster-{uuid.uuid4().hex}"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "RAYMETA_TEST_CLUSTER": marker}
    env.pop("RAY_ADDRESS", None)
    dashboard = free_port()
    temp_dir = tempfile.mkdtemp(prefix="raymeta-ray-")  # short: Ray's socket paths live under it
    start = subprocess.run(
        ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}", f"--temp-dir={temp_dir}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--num-cpus=2", "--disable-usage-stats",
         # Every fixed default port taken from a free one, so the test's cluster starts beside another Ray on this
         # machine (an embedded one of a user's run binds the agent's default port 52365, and jobs then fail
         # with "No available agent to submit job").
         *(f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                  "metrics-export-port", "runtime-env-agent-port",
                                                  "ray-client-server-port", "node-manager-port",
                                                  "object-manager-port"))],
        env=env, capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    finally:
        # Not `ray stop`, which ends every Ray cluster on the machine (a user's sweep beside the tests, say):
        # only the processes that inherited this cluster's marker.
        stop_marked_processes(marker)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_marked_processes(marker: str, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``, every process whose environment holds RAYMETA_TEST_CLUSTER=marker."""
    needle = f"RAYMETA_TEST_CLUSTER={marker}".encode()

    def marked() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as handle:
                        if needle in handle.read().split(b"\0"):
                            found.append(int(entry))
                except OSError:  # gone, or not ours to read
                    pass
        return found

    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + timeout
        for pid in marked():
            try:
                os.kill(pid, signal_number)
            except ProcessLookupError:
                pass
        while marked() and time.monotonic() < deadline:
            time.sleep(0.5)
        if not marked():
            return


@pytest.mark.slow
def test_debug_job_submitted_to_a_local_cluster_writes_its_results(ray_head, tmp_path):
    run_dir = tmp_path / "run"
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text("working_dir: .\n")
    job = subprocess.run([str(ROOT / "jobs" / "submit.sh"), "jobs/debug.yaml", "--run-dir", str(run_dir)],
                         env={**ray_head, "RUNTIME_ENV": str(runtime_env)}, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log and "Ray Train with 2 worker(s)" in log
    tables = list((run_dir / "results").glob("eval-*.parquet"))
    assert len(tables) == 1
    frame = pd.read_parquet(tables[0])
    assert list(frame.columns) == RESULT_COLUMNS and len(frame) == 5
    assert (run_dir / "train" / "checkpoint.pt").is_file() and (run_dir / "report.html").is_file()


@pytest.mark.slow
def test_a_sweep_submitted_as_a_job_runs_its_trials_on_the_cluster(ray_head, tmp_path):
    run_dir, space = tmp_path / "run", tmp_path / "one.yaml"
    space.write_text("num_samples: 1\nscheduler: fifo\nparams:\n  train.lambda_rec: {loguniform: [0.1, 10.0]}\n")
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text("working_dir: .\n")
    job = subprocess.run([str(ROOT / "jobs" / "submit.sh"), "--sweep", str(space), "jobs/debug.yaml",
                          "--run-dir", str(run_dir), "--verbose", "0"],
                         env={**ray_head, "RUNTIME_ENV": str(runtime_env)}, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log and "joining the Ray cluster" in log
    sweep = run_dir / "sweeps" / "one"
    assert len(list((sweep / "results").glob("*.parquet"))) == 1 and (sweep / "best.yaml").is_file()


def test_submit_script_names_a_missing_search_space():
    result = subprocess.run([str(ROOT / "jobs" / "submit.sh"), "--sweep", "tune_spaces/nope.yaml", "jobs/debug.yaml"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "tune_spaces/nope.yaml" in result.stderr


def test_runtime_env_ships_the_working_dir_and_installs_the_package():
    import yaml

    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and env["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]


def test_submit_script_names_a_missing_config(tmp_path):
    result = subprocess.run([str(ROOT / "jobs" / "submit.sh"), "jobs/nope.yaml"], capture_output=True, text=True)
    assert result.returncode == 2 and "jobs/nope.yaml" in result.stderr
