"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from ikd.config import Config, load_config

# Token authentication, as on a fresh cluster (DESIGN.md §7): Ray's clients read RAY_AUTH_MODE
# once, when ray is first imported, so the Job SDK in this process can talk to the `ray_head`
# fixture's head only if it is set before anything imports ray. Local Rays take it too.
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture
def smoke() -> Config:
    return load_config("smoke", warn=False)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray with 2 CPUs for every test that needs it (each start costs seconds).

    Ray Train's controller polls its workers every 2 s and starts a preemption watcher for
    cloud nodes; the tests' runs last seconds, so they poll every 0.2 s and skip the watcher
    (the processes Ray starts inherit these variables). What the runs compute is unchanged.
    """
    import ray

    from ikd.cluster import init_ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_dataset(ray_session, tmp_path_factory):
    """The smoke preset's dataset, built once per session: (config, folder, build seconds).

    Tests that damage it (tests/test_data_pipeline.py) rebuild it before they finish."""
    import time

    from ikd.data.pipeline import build_dataset

    root = tmp_path_factory.mktemp("datasets")
    config = load_config(
        "smoke",
        [f"data.root={root}", "teacher.source=trained", f"train.runs_root={root.parent / 'runs'}"],
        warn=False,
    )
    start = time.perf_counter()
    folder = build_dataset(config, progress=False)
    return config, folder, time.perf_counter() - start


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of the session's own, for `ray job submit` tests: `ray start --head --block`
    on free ports, its own temp dir, token auth as a fresh cluster has it (a `ray.init()` on this
    machine wrote ~/.ray/auth_token). Yields its dashboard address and the job entrypoints'
    Python. Stopped by killing its process group — `ray stop` would stop every Ray here."""
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
    errors = open(os.path.join(temp, "start.err"), "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=errors
    )
    address = f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = open(errors.name).read()  # noqa: SIM115
                    raise RuntimeError(f"the test's Ray head did not start: {stderr}") from None
                time.sleep(1)
        yield address, sys.executable
    finally:  # `ray start --block` ignores SIGTERM for 30 s and more: no state worth saving
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        errors.close()
        subprocess.run(["pkill", "-9", "-f", temp], check=False)  # workers in their own sessions
        subprocess.run(["rm", "-rf", temp], check=False)


def pytest_collection_modifyitems(config, items):
    """GPU tests are the only ones that may be skipped: without CUDA they are."""
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped or xfailed test that does not need a GPU is a defect: report it as failed."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped or hasattr(report, "wasxfail")) and "gpu" not in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"skipped/xfailed without needing a GPU: {report.longrepr}"
