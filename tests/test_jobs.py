"""`ray job submit` for real, on the session's own head (`ray_head` in conftest.py): the main job
on the smoke preset is submitted with the Job SDK by tests/test_studies.py's fixture, which checks
that it succeeds and what it wrote; here, what a job refuses."""

from pathlib import Path

import pytest

from ikd.cluster import wait_for_job

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_relative_roots_are_an_error_inside_a_job(ray_head):
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, python = ray_head
    client = JobSubmissionClient(address)
    job = client.submit_job(
        entrypoint=f"{python} -m ikd study studies/search_identitykd.py --preset smoke --quick "
        "--results results/x",
        runtime_env={"working_dir": str(ROOT), "excludes": ["results/", "datasets/", ".git/"]},
    )
    status, logs = wait_for_job(client, job, 120)
    assert status == JobStatus.FAILED
    assert "ikd: error: inside a Ray job, relative roots" in logs
    assert "data.root=datasets" in logs and "results=results/x" in logs
