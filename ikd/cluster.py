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


def cluster_cpus() -> int:
    """The cluster's CPUs, at least 1."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
