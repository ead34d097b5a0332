"""Joining Ray: a local instance, or the cluster named by RAY_ADDRESS (part of the Ray layer)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import ray

from ikd.errors import UserError


def init_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray, or join the cluster named by RAY_ADDRESS (whose size is its own)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and address != "local" and num_cpus is not None:
        raise UserError("RAY_ADDRESS names a cluster: it decides the CPUs; drop --num-cpus")
    ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, configure_logging=False)


# Set by Ray's job manager in a submitted job's driver process (ray/_private/runtime_env/constants.py)
JOB_MARKER = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """Whether this process is the driver of a submitted Ray job (`ray job submit`)."""
    return JOB_MARKER in os.environ


def require_absolute_in_job(roots: dict[str, str | os.PathLike | None]) -> None:
    """Inside a Ray job the working dir is a temporary copy that goes with the job: a relative
    data, run or result root would write there and be lost. Raises UserError naming them."""
    if not in_ray_job():
        return
    relative = [
        f"{name}={value}"
        for name, value in roots.items()
        if value is not None and "://" not in str(value) and not os.path.isabs(value)
    ]
    if relative:
        raise UserError(
            "inside a Ray job, relative roots would land in the job's temporary copy of the "
            f"working dir: {', '.join(relative)}; pass absolute paths (or URIs) on storage every "
            "node shares, e.g. data.root=/mnt/shared/ikd/datasets --results /mnt/shared/ikd/results "
            "(cluster/README.md)"
        )


def cluster_cpus() -> int:
    """The cluster's CPUs, at least 1."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@contextlib.contextmanager
def local_head(num_cpus: int = 2) -> Iterator[str]:
    """A Ray head of its own on this machine (`ray start --head --block`), for job tests and
    benchmarks: free ports for every component, its own temp dir, token auth as a fresh cluster
    has it. Yields its dashboard address (the Job SDK's and `ray job submit`'s). Stopped by
    killing its process group: `ray stop` would stop every Ray on the machine."""
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
        f"--num-cpus={num_cpus}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
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
            except Exception:  # not up yet (connection refused, no job agent yet)
                if process.poll() is not None or time.monotonic() > deadline:
                    with open(errors.name) as text:
                        raise UserError(f"a local Ray head did not start: {text.read()}") from None
                time.sleep(1)
        yield address
    finally:  # `ray start --block` ignores SIGTERM for 30 s and more: no state worth saving
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        errors.close()
        subprocess.run(["pkill", "-9", "-f", temp], check=False)  # workers in their own sessions
        subprocess.run(["rm", "-rf", temp], check=False)


def wait_for_job(client: Any, job: str, seconds: float = 600) -> tuple[Any, str]:
    """A submitted job's final status and its logs, polling its `JobSubmissionClient`.

    Raises:
        TimeoutError: it has not ended after `seconds`; the logs' tail says where it was.
    """
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + seconds
    ended = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    while (status := client.get_job_status(job)) not in ended:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job} still {status} after {seconds:.0f} s: "
                               f"{client.get_job_logs(job)[-2000:]}")  # fmt: skip
        time.sleep(0.5)
    return status, client.get_job_logs(job)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
