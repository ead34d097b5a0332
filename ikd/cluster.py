"""Joining Ray: a local instance, or the cluster named by RAY_ADDRESS (part of the Ray layer)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

from ikd.config import Config
from ikd.errors import Terminated, UserError, stop

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
        signal.signal(signal.SIGTERM, stop)


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


def one_at_a_time(shape: dict[str, float]) -> bool:
    """Whether the cluster runs one run of a trial's `shape` at a time, on this node, where this
    process can train it as well (a laptop, a one-node head; with its GPU where it takes one;
    not a Ray Client's process, which is not on the cluster): then a study trains its
    re-evaluations and final runs in this process rather than start a worker for each."""
    if ray.util.client.ray.is_connected():
        return False
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    if len(nodes) != 1 or nodes[0]["NodeID"] != here or cluster_cpus() >= 2 * shape["cpu"]:
        return False
    if shape.get("gpu"):
        import torch

        return torch.cuda.is_available()
    return True


_STARTED = itertools.count()  # nodes this process has started: each gets its own worker ports


class LocalCluster:
    """A Ray cluster of separate nodes on this machine, each a `ray start --block` process group
    with its own CPUs, custom resources, ports and temp dir: what a multi-node cluster is to Ray
    (its own raylet, object store and workers per node), for tests, benchmarks and users trying
    the cluster path (`python -m ikd.cluster`, cluster/local.sh). Token auth is on, as on a
    fresh cluster. `ray stop` would stop every Ray on the machine: nodes are stopped by
    killing their process groups (`kill`, `stop`)."""

    _NAMES = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")  # fmt: skip

    def __init__(
        self,
        cpus: int = 2,
        resources: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token"}  # every node's
        self.env.pop("RAY_ADDRESS", None)
        # name → (process, temp dir, its own resource: one per start, so a node started again
        # under a name is told from its dead predecessor)
        self.nodes: dict[str, tuple[subprocess.Popen, str, str]] = {}
        self.disks: list[str] = []  # the temp dirs of the nodes killed so far

        def head() -> list[str]:
            ports = _free_ports(3)
            self.gcs = f"127.0.0.1:{ports[0]}"
            self.address = f"http://127.0.0.1:{ports[1]}"  # the dashboard: the Job SDK's address
            return ["--head", f"--port={ports[0]}", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={ports[1]}",
                    f"--ray-client-server-port={ports[2]}"]  # fmt: skip

        self._up("head", cpus, resources, head, lambda: self.client().list_jobs())

    def add(self, name: str, cpus: int = 1, resources: dict[str, float] | None = None) -> None:
        """Start a node that joins the head; returns once the cluster counts it."""
        self._up(name, cpus, resources, lambda: [f"--address={self.gcs}"],
                 lambda: name in self.alive())  # fmt: skip

    def alive(self) -> dict[str, str]:
        """The nodes started here that the cluster counts as alive: name → Ray node id."""
        from ray.util.state import list_nodes

        nodes = list_nodes(
            address=self.address,
            filters=[("state", "=", "ALIVE")],
            raise_on_missing_output=False,  # else it raises once a dead node is filtered out
        )
        ids = {key: node.node_id for node in nodes for key in node.resources_total}
        return {name: ids[key] for name, (_, _, key) in self.nodes.items() if key in ids}

    def kill(self, name: str) -> None:
        """Kill a node at once, as a lost machine: its raylet, object store and workers."""
        process, temp, _ = self.nodes.pop(name)
        _end(process, temp)
        self.disks.append(temp)  # what it left on its disk, until `stop`

    def stop(self) -> None:
        for name in [*reversed(self.nodes)]:
            self.kill(name)
        for temp in self.disks:
            subprocess.run(["rm", "-rf", temp], check=False)
        self.disks.clear()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> Any:
        """A Job SDK client of the cluster."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)

    def _start(
        self, name: str, cpus: int, resources: dict[str, float] | None, role: list[str]
    ) -> None:
        temp = tempfile.mkdtemp(prefix=f"ikdray-{name}-", dir="/tmp")  # short socket paths
        ports = _free_ports(len(self._NAMES))
        # Workers get a range below the ephemeral ports (where _free_ports draws), above the
        # default worker range (10002-19999) of any other Ray on the machine, one per node.
        worker = 20000 + ((os.getpid() * 7 + next(_STARTED)) % 60) * 200
        key = f"ikd_node_{name}_{next(_STARTED)}"
        own = {**(resources or {}), key: 1}
        command = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *role,
            f"--num-cpus={cpus}", f"--resources={json.dumps(own)}", f"--temp-dir={temp}",
            "--disable-usage-stats", f"--min-worker-port={worker}",
            f"--max-worker-port={worker + 199}",
            *(f"--{key}={port}" for key, port in zip(self._NAMES, ports, strict=True)),
        ]  # fmt: skip
        with open(os.path.join(temp, "start.err"), "w") as errors:
            process = subprocess.Popen(
                command,
                env=self.env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        self.nodes[name] = (process, temp, key)

    def _up(
        self,
        name: str,
        cpus: int,
        resources: dict[str, float] | None,
        role: Callable[[], list[str]],
        check: Callable[[], Any],
        tries: int = 3,
        seconds: float = 90,
    ) -> None:
        """Start a node and wait until `check` says it is up. A `ray start` whose raylet does
        not register within Ray's fixed 30 s ends with "timed out during startup" (seen on a
        loaded 2-core machine): such a node is started again, on new ports, `tries` times in all."""

        def up() -> bool:
            try:
                return check() is not False
            except Exception:  # not up yet (connection refused, no job agent yet)
                return False

        for attempt in range(1, tries + 1):
            self._start(name, cpus, resources, role())
            process, temp, _ = self.nodes[name]
            if poll(up, seconds, every=1, stop=lambda p=process: p.poll() is not None):
                return
            del self.nodes[name]
            _end(process, temp)
            errors = Path(temp, "start.err").read_text()
            shutil.rmtree(temp, ignore_errors=True)  # a failed start leaves nothing to look at
            why = (errors.strip().splitlines() or ["no output"])[-1]
            if attempt < tries:
                log.warning(
                    "a local Ray node (%s) did not start (%s); starting it again", name, why
                )
        self.stop()
        raise UserError(
            f"a local Ray node ({name}) did not start in {tries} tries: {errors[-2000:]}"
        )


@contextlib.contextmanager
def local_head(num_cpus: int = 2) -> Iterator[str]:
    """A one-node `LocalCluster`; yields its dashboard address (the Job SDK's and `ray job
    submit`'s)."""
    with LocalCluster(cpus=num_cpus) as cluster:
        yield cluster.address


def wait_for_job(client: Any, job: str, seconds: float = 600) -> tuple[Any, str]:
    """A submitted job's final status and its logs, polling its `JobSubmissionClient`.

    Raises:
        TimeoutError: it has not ended after `seconds`; the logs' tail says where it was.
    """
    from ray.job_submission import JobStatus

    ended = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    status = poll(lambda: (now := client.get_job_status(job)) in ended and now, seconds)
    if not status:
        raise TimeoutError(f"job {job} still {client.get_job_status(job)} after {seconds:.0f} s: "
                           f"{client.get_job_logs(job)[-2000:]}")  # fmt: skip
    return status, client.get_job_logs(job)


def poll(
    check: Callable[[], Any],
    seconds: float,
    *,
    every: float = 0.5,
    stop: Callable[[], bool] | None = None,
) -> Any:
    """Call `check` every `every` seconds until it gives something true, and return that; or
    None once `seconds` have passed or `stop()` says waiting is pointless (a process ended)."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline or (stop is not None and stop()):
            return None
        time.sleep(every)
    return value


def _end(process: subprocess.Popen, temp: str) -> None:
    """Kill a node's `ray start` process group and its workers (in their own sessions)."""
    with contextlib.suppress(ProcessLookupError):  # one that failed to start is gone already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    subprocess.run(["pkill", "-9", "-f", temp], check=False)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def main(argv: list[str] | None = None) -> int:
    """`python -m ikd.cluster` (cluster/local.sh): a head and N more nodes on this machine, up
    until Ctrl+C or SIGTERM — the cluster path (`ray job submit`, several nodes) tried locally."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="cluster/local.sh",
        description="Start a Ray cluster of several nodes on this machine (a head and --nodes "
        "more, each its own raylet, object store, workers and CPUs), print how to submit a job to it, and keep it up until Ctrl+C.",
    )
    parser.add_argument("--nodes", type=int, default=1, help="nodes besides the head (default 1)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each node (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, stop)
    try:
        with LocalCluster(cpus=args.cpus) as cluster:
            for index in range(args.nodes):
                cluster.add(f"n{index + 1}", cpus=args.cpus)
            log.info(
                "a Ray cluster of %d nodes (%d CPUs each) is up; in another shell:\n\n"
                "  export RAY_ADDRESS=%s RAY_AUTH_MODE=token\n"
                "  ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \\\n"
                "    python -m ikd study studies/table3_methods.py --preset smoke --quick \\\n"
                "    --results $PWD/results/cluster-smoke data.root=$PWD/datasets\n\n"
                "Ctrl+C stops it.",
                1 + args.nodes,
                args.cpus,
                cluster.address,
            )
            while True:
                time.sleep(3600)
    except (KeyboardInterrupt, Terminated):
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
