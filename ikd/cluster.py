"""Joining Ray: a local instance, or the cluster named by RAY_ADDRESS (part of the Ray layer)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from ikd.config import Config
from ikd.errors import Terminated, UserError

log = logging.getLogger(__name__)


def init_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray, or join the cluster named by RAY_ADDRESS (whose size is its own).

    Without RAY_ADDRESS, Ray joins the cluster the last `ray start` on this machine recorded, if
    any; when that head no longer answers (killed without `ray stop`), one line says so and a
    local Ray starts instead.

    From then on, for the life of the process (also after `ray.shutdown`), SIGTERM raises
    `ikd.errors.Terminated` in the main thread, as Ctrl+C raises KeyboardInterrupt.

    Raises:
        UserError: RAY_ADDRESS names a cluster nothing answers at (checked first, within
            seconds: Ray itself would retry for minutes) — with "auto", the recorded one — or
            is not a Ray address.
    """
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None  # an empty one is unset, as Ray reads it
    if address and address != "local" and num_cpus is not None:
        raise UserError("RAY_ADDRESS names a cluster: it decides the CPUs; drop --num-cpus")
    if address in (None, "auto"):
        address = _unless_recorded_head_is_dead(address)
    elif address != "local":
        _reachable(address)
    try:
        ray.init(
            address=address, num_cpus=num_cpus, include_dashboard=False, configure_logging=False
        )
    except (ConnectionError, ValueError) as error:
        raise UserError(f"RAY_ADDRESS={address}: {str(error).splitlines()[0]}") from None
    # after ray.init, which sets its own SIGTERM handler (SystemExit, after its C++ core has
    # printed a stack dump): SIGTERM then stops ikd as Ctrl+C does (ikd.errors.Terminated)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


def _reachable(address: str) -> None:
    """Raise a one-line UserError unless something listens at a Ray address's host and port."""
    if address.startswith(("http://", "https://")):
        raise UserError(
            f"RAY_ADDRESS={address} is a dashboard (jobs API) address, for `ray job submit`; "
            "a driver joins the cluster at its GCS address (<head>:6379) — inside a submitted "
            "job Ray sets it — or unset RAY_ADDRESS for a local Ray"
        )
    try:
        _connect(address)
    except (OSError, ValueError) as error:
        raise UserError(
            f"RAY_ADDRESS={address}: no Ray cluster answers there ({error}); start it "
            "(`ray up cluster/cluster.yaml`, or `ray start --head`) or unset RAY_ADDRESS for a "
            "local Ray"
        ) from None


def _unless_recorded_head_is_dead(address: str | None) -> str | None:
    """The address for `ray.init` when RAY_ADDRESS is unset (None) or "auto": Ray would join the
    cluster the last `ray start` here recorded (`<Ray's temp dir>/ray_current_cluster`, read by
    ray._private.services.get_ray_address_from_environment) and, when its head is dead, retry
    its GCS for minutes. Unset: "local" then, said in one line; "auto" asks for a cluster, so a
    UserError."""
    from ray._common.utils import get_ray_address_file  # Ray's own path: RAY_TMPDIR, TMPDIR, /tmp

    record = get_ray_address_file(None)
    try:
        recorded = Path(record).read_text().strip()
    except OSError:  # no record: Ray starts a local instance ("auto": joins a running one)
        return address
    try:
        _connect(recorded)
    except (OSError, ValueError) as error:
        if address == "auto":
            raise UserError(
                f"RAY_ADDRESS=auto: no Ray cluster answers at {recorded}, recorded by `ray "
                f"start` in {record} ({error}); start it again, or unset RAY_ADDRESS for a "
                "local Ray"
            ) from None
        log.warning(
            "no Ray answers at %s, the head a `ray start` recorded in %s (%s; `ray stop` "
            "clears the record): starting a local Ray",
            recorded,
            record,
            error,
        )
        return "local"
    return address


def _connect(address: str, seconds: float = 5.0) -> None:
    """Open and close a TCP connection to a Ray address's host and port (OSError, ValueError)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.create_connection((host or "127.0.0.1", int(port)), timeout=seconds):
        pass


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


def largest_node_cpus() -> float:
    """The CPUs of the largest live node: a trial or a worker cannot span nodes."""
    nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return max(nodes, default=cluster_cpus())


def cluster_gpus() -> float:
    return ray.cluster_resources().get("GPU", 0.0)


def on_gpus(config: Config, workers: int) -> bool:
    """Whether a run of `config` with `workers` workers trains on GPUs here: train.device=cuda,
    or auto on a cluster with `resources.gpus_per_worker` for each worker."""
    needed = workers * config.resources.gpus_per_worker
    if config.train.device == "cuda" and cluster_gpus() < needed:
        raise UserError(
            f"train.device=cuda asks for {needed:g} GPUs; the cluster has {cluster_gpus():g} "
            "(set train.workers, resources.gpus_per_worker or train.device=cpu)"
        )
    return config.train.device == "cuda" or (
        config.train.device == "auto" and cluster_gpus() >= needed
    )


TRIAL_DRIVER_CPUS = 0.5  # a Ray Train trial's own process (its workers take their own CPUs)


def trial_shape(config: Config) -> tuple[dict[str, float], int]:
    """A study trial's Tune resources and its torch threads, from `config.resources`.

    One-worker trials (the loop in the trial's process) take `cpus_per_worker` CPUs (default: an
    equal share of the cluster per concurrent trial, at most the largest node's) and, on GPUs,
    `gpus_per_worker`; a Ray Train trial reserves only its own process, and `scaling` sizes its
    workers."""
    r = config.resources
    if r.workers_per_trial > 1:
        return {"cpu": TRIAL_DRIVER_CPUS}, config.train.threads
    cpus = r.cpus_per_worker or max(
        1, min(cluster_cpus() // r.concurrent_trials, int(largest_node_cpus()))
    )
    shape = {"cpu": cpus}
    if on_gpus(config, 1):
        shape["gpu"] = r.gpus_per_worker
    return shape, config.train.threads or max(1, round(cpus))


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
