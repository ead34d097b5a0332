"""`ray job submit` for real: a local head of its own (`ray start --head` on free ports, its own
temp dir, token auth as a fresh cluster has it), the smoke search study submitted with the Job
SDK as cluster/README.md says, its results checked, and the head stopped — also when the test
fails. (`ray stop` would stop every Ray on the machine: the head's process group is killed.)"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ikd.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def head():
    """(dashboard address, environment) of a 2-CPU head on free ports; stopped afterwards."""
    from ray.job_submission import JobSubmissionClient

    temp = tempfile.mkdtemp(prefix="ikdray-", dir="/tmp")  # Ray's socket paths must stay short
    ports = _free_ports(10)
    # Workers get a range below the ephemeral ports (where _free_ports draws) and above the
    # default worker range (10002-19999) of any other Ray on the machine.
    worker = 20000 + (os.getpid() % 50) * 200
    names = ("port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port", "node-manager-port",
             "object-manager-port", "ray-client-server-port")  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    command = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp}", "--disable-usage-stats",
        f"--min-worker-port={worker}", f"--max-worker-port={worker + 199}",
        *(f"--{name}={port}" for name, port in zip(names, ports, strict=False)),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    address = f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                os.environ["RAY_AUTH_MODE"] = "token"
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read()
                    raise RuntimeError(f"the test's Ray head did not start: {stderr}") from None
                time.sleep(1)
        yield address, env
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", temp], check=False)  # workers in their own sessions
        subprocess.run(["rm", "-rf", temp], check=False)


def test_a_submitted_smoke_study_succeeds_and_writes_its_results(head, smoke_dataset, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, _ = head
    config, _, _ = smoke_dataset
    results = tmp_path / "results"
    runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    client = JobSubmissionClient(address)
    started = time.perf_counter()
    job = client.submit_job(
        entrypoint=(
            "python -m ikd study studies/search_identitykd.py --preset smoke --quick "
            f"--results {results} data.root={config.data.root} teacher.source=trained"
        ),
        runtime_env={**runtime_env, "working_dir": str(ROOT)},
    )
    status = JobStatus.PENDING
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        time.sleep(1)
        status = client.get_job_status(job)
        assert time.perf_counter() - started < 600, client.get_job_logs(job)[-3000:]
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    print(f"job wall time {time.perf_counter() - started:.1f} s")
    study = results / "search_identitykd"
    assert (study / "table.md").exists() and (study / "runs.csv").exists()
    assert (results / "runs" / "search_identitykd" / "final").is_dir()
    # The results render again outside the job, from the same records.
    assert main(["report", "search_identitykd", "--results", str(results)]) == 0


def test_relative_roots_are_an_error_inside_a_job(head, smoke_dataset):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, _ = head
    client = JobSubmissionClient(address)
    job = client.submit_job(
        entrypoint="python -m ikd study studies/search_identitykd.py --preset smoke --quick "
        "--results results/x",
        runtime_env={"working_dir": str(ROOT), "excludes": ["results/", "datasets/"]},
    )
    deadline = time.monotonic() + 120
    while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED}:
        assert time.monotonic() < deadline
        time.sleep(1)
    assert client.get_job_status(job) == JobStatus.FAILED
    logs = client.get_job_logs(job)
    assert "ikd: error:" in logs and "relative" in logs and "results/x" in logs
