"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import os
import shutil
import signal
import sys

# OpenMP threads that wait sleep instead of spinning: the jobs beside the tests (the main job,
# the cluster jobs) and the tests all run torch on 2 cores, and spinning threads of one starve
# the other (the suite: 521 s spinning, 442 s sleeping, 2026-12-05). Read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A suite a script starts in the background inherits SIGINT ignored (bash does that to an
# asynchronous command), and ikd rightly leaves an ignored SIGINT alone: the stop tests send
# SIGINT to ikd, here and to the drivers they start, and expect what a terminal's Ctrl+C does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest

from ikd.config import Config, load_config


def _s3_port() -> int:
    """A free port below the ephemeral range, where Ray's servers (which bind port 0) never
    land, and outside its defaults (6379, 8265, 10001) and its workers' (10002-19999,
    LocalCluster's 20000-32199): an ephemeral one, free now, was once taken by a Ray gRPC server
    before moto's server started on it, and the S3 tests spoke S3 to HTTP/2."""
    import socket

    for offset in range(1000):
        port = 9000 + (os.getpid() + offset) % 1000
        with socket.socket() as free:
            try:
                free.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 9000-9999 for the tests' S3 server")


# Token authentication, as on a fresh cluster (DESIGN.md §7): Ray's clients read RAY_AUTH_MODE
# once, when ray is first imported, so the Job SDK in this process can talk to the `ray_head`
# fixture's head only if it is set before anything imports ray. Local Rays take it too.
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Every Ray the tests start keeps up to 4 idle workers (Ray's default: as many as its CPUs),
# so a worker that has imported torch for one run (a Ray task: a final run or re-evaluation on
# the two-node cluster) takes the next rather than being killed while a study tunes and a new
# one started, importing torch again (~4 s of CPU): the main job's tests, 321 → 301 s of CPU
# when its final runs were tasks too (2026-12-05). Read by each raylet as it starts.
os.environ.setdefault("RAY_num_workers_soft_limit", "4")

# An S3 API of the session's own (the `s3` fixture: moto's server, started when first asked
# for), reached as a user reaches MinIO: credentials and the endpoint from the environment, set
# here, before any Ray starts, so every process Ray starts for a test has them too.
_S3_PORT = _s3_port()
os.environ.update(
    AWS_ACCESS_KEY_ID="ikd-test",
    AWS_SECRET_ACCESS_KEY="ikd-test",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{_S3_PORT}",
)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on the port the environment names (above), for the session: a process
    of its own, as a user's MinIO is (in a thread here, it would wait on this process's GIL
    while a test computes, and the jobs' S3 calls with it)."""
    import subprocess
    import urllib.request

    from ikd.cluster import poll

    log = tmp_path_factory.mktemp("s3") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(_S3_PORT)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def listening() -> bool:  # moto's answer, not another server's on the port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{_S3_PORT}/", timeout=1) as answer:
                return b"ListAllMyBucketsResult" in answer.read()
        except OSError:
            return False

    if not poll(listening, 60, every=0.2, stop=lambda: server.poll() is not None):
        server.kill()
        raise RuntimeError(f"moto's S3 server did not start: {log.read_text()[-2000:]}")
    yield os.environ["AWS_ENDPOINT_URL_S3"]
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="session")
def new_bucket(s3_server):
    """Makes a fresh bucket on the session's S3 server; returns its `s3://` URI."""
    import uuid

    import boto3

    def create() -> str:
        bucket = f"ikd-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
        return f"s3://{bucket}"

    return create


@pytest.fixture
def s3(new_bucket):
    """A fresh bucket on the session's S3 server: its `s3://` URI."""
    return new_bucket()


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


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of the session's own for `ray job submit` tests (`ikd.cluster.local_head`):
    its dashboard address and the job entrypoints' Python."""
    from ikd.cluster import local_head

    with local_head(num_cpus=2) as address:
        yield address, sys.executable


@pytest.fixture(scope="session")
def main_job(smoke_dataset, ray_head, tmp_path_factory):
    """The main job on the smoke preset (tests/main_job.py) on a copy of the session's smoke
    dataset in `<root>/datasets`, submitted to the session's own head: (its client, its id, its results root), not waited for.
    """
    from main_job import submit

    root = tmp_path_factory.mktemp("studies")
    # a copy of its own (the same data and teacher): tests/test_data_pipeline.py damages the
    # session's dataset, and rebuilds it, while the job runs
    folder = smoke_dataset[1].local
    shutil.copytree(folder, root / "datasets" / folder.name)
    yield submit(*ray_head, str(root / "datasets"), root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_jobs(smoke_dataset, new_bucket, tmp_path_factory):
    """The jobs on two nodes and S3 (tests/cluster_jobs.py), started in a thread, not waited
    for: `.outcome()` waits."""
    from cluster_jobs import ClusterJobs

    jobs = ClusterJobs(smoke_dataset[1], new_bucket(), tmp_path_factory.mktemp("cluster"))
    jobs.start()
    yield jobs
    jobs.join(600)


JOBS = ("main_job", "cluster_jobs")  # started as the session begins, read by its last tests


@pytest.fixture(scope="session", autouse=True)
def _jobs_first(request):
    """Starts the main job and the cluster jobs as the session begins when a selected test reads
    them: they run on their own Ray clusters while the other tests run (which leave a core idle
    a third of the time, waiting on process starts), and the tests that read them run last
    (below)."""
    for job in JOBS:
        if any(job in item.fixturenames for item in request.session.items):
            request.getfixturevalue(job)


def pytest_collection_modifyitems(config, items):
    """The jobs' tests run last, the main job's before the cluster jobs' (which end later: the
    main job's tests run while they finish); GPU tests are the only ones that may be skipped:
    without CUDA they are."""
    import torch

    items.sort(key=lambda item: [job in item.fixturenames for job in reversed(JOBS)])  # stable
    if torch.cuda.is_available():
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped or xfailed test is a defect, reported as failed — unless it needs a GPU or the
    paper's text, which lies beside the repository (CI has it; a fresh clone alone does not)."""
    outcome = yield
    report = outcome.get_result()
    needs = {"gpu", "paper_text"} & set(item.keywords)
    if (report.skipped or hasattr(report, "wasxfail")) and not needs:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped/xfailed without needing a GPU or the paper's text: {report.longrepr}"
        )
