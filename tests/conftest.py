"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import os
import shutil
import sys

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


@pytest.fixture(scope="session", autouse=True)
def _main_job_first(request):
    """Submits the main job as the session begins when a selected test reads it: it runs on its
    own head while the other tests run (they leave a core idle a third of the time, waiting on
    process starts), and the tests that read it run last (below)."""
    if any("main_job" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("main_job")


def pytest_collection_modifyitems(config, items):
    """The main job's tests run last; GPU tests are the only ones that may be skipped: without
    CUDA they are."""
    import torch

    items.sort(key=lambda item: "main_job" in item.fixturenames)  # stable: the rest in order
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
