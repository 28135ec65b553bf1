"""A real Ray cluster on 127.0.0.1, started and used with docs/cluster.md's cluster recipe as a user runs it, token
authentication on: `ray get-auth-token --generate`, `ray start --head`, then the debug job and a one-trial sweep
submitted with jobs/submit.sh. No RAY_AUTH_* variable is set on the head or on the head node's client: Ray 2.60
turns authentication on by itself once a token exists, and its job client sends the token only when told to,
which submit.sh does.

The recipe's commands run as written, with these differences only: the cluster's HOME, and so its token file
(~/.ray/auth_token), is a temporary folder, not the user's; every port is a free one (so the cluster starts beside
another Ray on this machine) and the dashboard listens on 127.0.0.1 alone; RAY_ADDRESS names that dashboard.
The debug job is submitted from the head's own HOME (the token found in ~/.ray/auth_token); the sweep from another
HOME holding no token, handed the head's as docs/cluster.md says for a remote cluster (RAY_AUTH_TOKEN); a client with
no token is refused.

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
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest

from raymeta.io.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment as a user's shell would have it: no RAY_* auth or address variables set,
    HOME a folder of the test's, the test venv's bin first on PATH."""
    env = {key: value for key, value in os.environ.items() if key not in (*AUTH_VARIABLES, "RAY_ADDRESS")}
    return {
        **env,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The head of docs/cluster.md's recipe, with token authentication; yields the environment of a user on the head
    node (RAY_ADDRESS set, the token in ~/.ray/auth_token) and the token that `ray get-auth-token` printed."""
    marker = f"raymeta-test-cluster-{uuid.uuid4().hex}"
    home = tmp_path_factory.mktemp("head-home")
    env = user_env(home, RAYMETA_TEST_CLUSTER=marker)
    dashboard = free_port()
    temp_dir = tempfile.mkdtemp(prefix="raymeta-ray-")  # short: Ray's socket paths live under it
    try:
        # docs/cluster.md: `ray get-auth-token --generate >/dev/null` (writes ~/.ray/auth_token, under the
        # temporary HOME)
        generate = subprocess.run(
            ["bash", "-c", "ray get-auth-token --generate >/dev/null"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert generate.returncode == 0 and (home / ".ray" / "auth_token").is_file(), generate.stderr
        # docs/cluster.md: `ray get-auth-token` on the head prints the token to hand to other machines
        token = subprocess.run(["ray", "get-auth-token"], env=env, capture_output=True, text=True, timeout=120)
        assert token.returncode == 0 and token.stdout == (home / ".ray" / "auth_token").read_text(), token.stderr
        # docs/cluster.md: `ray start --head --dashboard-host=…`. Ray waits a fixed 30 s for its raylet to register,
        # which a machine busy with other work can overrun ("timed out during startup"): then once more, from scratch.
        for attempt in (1, 2):
            start = subprocess.run(
                [
                    "ray",
                    "start",
                    "--head",
                    "--node-ip-address=127.0.0.1",
                    f"--port={free_port()}",
                    f"--temp-dir={temp_dir}",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dashboard}",
                    "--num-cpus=2",
                    "--disable-usage-stats",
                    # Every fixed default port taken from a free one, so the test's cluster starts beside another Ray
                    # on this machine (an embedded one of a user's run binds the agent's default port 52365, and jobs
                    # then fail with "No available agent to submit job").
                    *(
                        f"--{name}={free_port()}"
                        for name in (
                            "dashboard-agent-listen-port",
                            "dashboard-agent-grpc-port",
                            "metrics-export-port",
                            "runtime-env-agent-port",
                            "ray-client-server-port",
                            "node-manager-port",
                            "object-manager-port",
                        )
                    ),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if start.returncode == 0 or attempt == 2 or "timed out during startup" not in start.stdout + start.stderr:
                break
            stop_marked_processes(marker)
            shutil.rmtree(temp_dir, ignore_errors=True)
            os.makedirs(temp_dir)
        assert start.returncode == 0, start.stdout + start.stderr
        address = f"http://127.0.0.1:{dashboard}"
        # Authentication is really on: the job API refuses a request without the token.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{address}/api/jobs/", timeout=30)
        assert refused.value.code == 401
        yield {"env": {**env, "RAY_ADDRESS": address}, "token": token.stdout}
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


@pytest.mark.ray
@pytest.mark.slow
def test_debug_job_submitted_to_a_local_cluster_writes_its_results(ray_head, tmp_path):
    run_dir = tmp_path / "run"
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text("working_dir: .\n")
    # docs/cluster.md: `RAY_ADDRESS=http://HEAD:8265 jobs/submit.sh jobs/CONFIG.yaml --run-dir …`, on the head node;
    # the job's YAML alone (its ray: group) asks for the two Ray Train workers
    job = subprocess.run(
        [str(ROOT / "jobs" / "submit.sh"), "jobs/debug_distributed.yaml", "--run-dir", str(run_dir)],
        env={**ray_head["env"], "RUNTIME_ENV": str(runtime_env)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log and "Ray Train with 2 worker(s)" in log
    tables = list((run_dir / "results").glob("eval-*.parquet"))
    assert len(tables) == 1
    frame = pd.read_parquet(tables[0])
    assert list(frame.columns) == RESULT_COLUMNS and len(frame) == 5
    assert (run_dir / "train" / "checkpoint.pt").is_file() and (run_dir / "report.html").is_file()


@pytest.mark.ray
def test_a_job_with_a_relative_run_dir_is_refused_before_it_starts(ray_head, tmp_path):
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text("working_dir: .\n")
    # no --run-dir: jobs/debug.yaml's runs/debug would land in Ray's copy of the working dir, in its session folder
    job = subprocess.run(
        [str(ROOT / "jobs" / "submit.sh"), "jobs/debug.yaml"],
        env={**ray_head["env"], "RUNTIME_ENV": str(runtime_env)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    log = job.stdout + job.stderr
    assert job.returncode != 0 and "failed" in log, log[-4000:]
    assert "runs as the Ray job raysubmit_" in log and "run_dir='runs/debug' would be written to" in log, log[-4000:]
    assert "runtime_resources/working_dir_files/" in log and "--run-dir s3://BUCKET/runs/NAME" in log
    assert "pretrain:" not in log  # refused before any stage ran


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_submitted_as_a_job_runs_its_trials_on_the_cluster(ray_head, tmp_path):
    run_dir, space = tmp_path / "run", tmp_path / "one.yaml"
    space.write_text("num_samples: 1\nscheduler: fifo\nparams:\n  train.lambda_rec: {loguniform: [0.1, 10.0]}\n")
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text("working_dir: .\n")
    # docs/cluster.md, a remote cluster: the head's token handed over as RAY_AUTH_TOKEN, from a HOME that holds none
    (tmp_path / "client-home").mkdir()
    client = user_env(
        tmp_path / "client-home", RAY_ADDRESS=ray_head["env"]["RAY_ADDRESS"], RAY_AUTH_TOKEN=ray_head["token"]
    )
    job = subprocess.run(
        [
            str(ROOT / "jobs" / "submit.sh"),
            "--sweep",
            str(space),
            "jobs/debug.yaml",
            "--run-dir",
            str(run_dir),
            "--verbose",
            "0",
        ],
        env={**client, "RUNTIME_ENV": str(runtime_env)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    log = job.stdout + job.stderr
    assert job.returncode == 0, log[-4000:]
    assert "succeeded" in log and "joining the Ray cluster" in log
    sweep = run_dir / "sweeps" / "one"
    assert len(list((sweep / "results").glob("*.parquet"))) == 1 and (sweep / "best.yaml").is_file()


@pytest.mark.ray
def test_a_client_without_the_token_is_refused(ray_head, tmp_path):
    (tmp_path / "home").mkdir()
    client = user_env(tmp_path / "home", RAY_ADDRESS=ray_head["env"]["RAY_ADDRESS"])
    job = subprocess.run(
        [str(ROOT / "jobs" / "submit.sh"), "jobs/debug.yaml", "--run-dir", str(tmp_path / "run")],
        env=client,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    log = job.stdout + job.stderr
    assert job.returncode != 0 and "Missing authentication token" in log, log[-4000:]
    assert not (tmp_path / "run").exists()


def test_submit_script_names_a_missing_search_space():
    result = subprocess.run(
        [str(ROOT / "jobs" / "submit.sh"), "--sweep", "tune_spaces/nope.yaml", "jobs/debug.yaml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "tune_spaces/nope.yaml" in result.stderr


def test_runtime_env_ships_the_working_dir_and_installs_the_package():
    import yaml

    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "." and env["pip"]["packages"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]


def test_submit_script_names_a_missing_config(tmp_path):
    result = subprocess.run([str(ROOT / "jobs" / "submit.sh"), "jobs/nope.yaml"], capture_output=True, text=True)
    assert result.returncode == 2 and "jobs/nope.yaml" in result.stderr
