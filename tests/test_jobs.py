"""`ray job submit` for real, on the session's own head (`ray_head` in conftest.py): the main job
on the smoke preset is submitted with the Job SDK by tests/test_studies.py's fixture, which checks
that it succeeds and what it wrote; here, what a job refuses."""

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def wait_for(client, job: str, seconds: float = 600):
    """The job's final status and logs (fails the test after `seconds`)."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + seconds
    while (status := client.get_job_status(job)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1)
    return status, client.get_job_logs(job)


def test_relative_roots_are_an_error_inside_a_job(ray_head):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, python = ray_head
    client = JobSubmissionClient(address)
    job = client.submit_job(
        entrypoint=f"{python} -m ikd study studies/search_identitykd.py --preset smoke --quick "
        "--results results/x",
        runtime_env={"working_dir": str(ROOT), "excludes": ["results/", "datasets/", ".git/"]},
    )
    status, logs = wait_for(client, job, 120)
    assert status == JobStatus.FAILED
    assert "ikd: error: inside a Ray job, relative roots" in logs
    assert "data.root=datasets" in logs and "results=results/x" in logs
