"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import os
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
