"""Joining Ray: a local instance, or the cluster named by RAY_ADDRESS (part of the Ray layer)."""

from __future__ import annotations

import os

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
