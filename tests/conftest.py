"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import pytest

from ikd.config import Config, load_config


@pytest.fixture
def smoke() -> Config:
    return load_config("smoke", warn=False)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray with 2 CPUs for every test that needs it (each start costs seconds)."""
    import ray

    from ikd.data.pipeline import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


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
