"""The main job of tests/test_studies.py, as cluster/README.md submits it: the Job SDK, the
working dir with cluster/runtime_env.yaml's excludes, absolute roots, the commit passed as
IKD_GIT_SHA. conftest.py's `main_job` submits it as the session begins."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
STUDIES = REPOSITORY / "studies"
SHA = "0123456789abcdef0123456789abcdef01234567"  # what `ikd run` in the job says its commit is
FIRST_SHA = "fedcba9876543210fedcba9876543210fedcba98"  # and the `ikd study` before it


def submit(address: str, python: str, data_root: str, root: Path) -> tuple[Any, str, Path]:
    """Submit the job; returns (its client, its id, its results root) at once.

    Its two commands: Table 4 alone first (its test variants read Table 3's tuned identitykd, so
    that variant alone is tuned on the way: a study reusing another's tuned variant tunes that
    variant first), then `ikd run`, every study with its test budget (Table 3's others there)."""
    from ray.job_submission import JobSubmissionClient

    results = root / "results"
    overrides = [
        f"data.root={data_root}",
        "teacher.source=trained",
        "train.student=mobilenet",  # Table 4 and the search choose their own
    ]
    study = [python, "-m", "ikd", "study", str(STUDIES / "table4_students.py"), "--preset",
             "smoke", "--quick", "--results", str(results), *overrides]  # fmt: skip
    run = [python, "-m", "ikd", "run", "--preset", "smoke", "--results", str(results),
           "--out", str(root), *overrides]  # fmt: skip
    entrypoint = f"env IKD_GIT_SHA={FIRST_SHA} {shlex.join(study)} && env IKD_GIT_SHA={SHA} {shlex.join(run)}"
    runtime_env = yaml.safe_load((REPOSITORY / "cluster" / "runtime_env.yaml").read_text())
    client = JobSubmissionClient(address)
    job = client.submit_job(
        entrypoint=entrypoint, runtime_env={**runtime_env, "working_dir": str(REPOSITORY)}
    )
    return client, job, results
