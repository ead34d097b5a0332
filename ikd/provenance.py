"""Where a result came from: the code's git commit, package versions and the hardware.

Torch-free and Ray-free (versions are read from the installed distributions), so run records
and reports can call it anywhere.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "ray", "optuna", "facenet-pytorch", "numpy", "pyarrow")
GIT_SHA = "IKD_GIT_SHA"  # set it where the code runs without its .git (e.g. a Ray job)
REPOSITORY = Path(__file__).resolve().parents[1]  # the checkout (or site-packages) holding ikd/
REPOSITORY_MARK = "<repo>"  # a record's paths inside the repository start with it


@functools.cache
def git_sha() -> str:
    """The commit of ikd's source tree ("-dirty" when it has uncommitted changes), `$IKD_GIT_SHA`
    when set, or "unknown" outside a git checkout."""
    if os.environ.get(GIT_SHA):
        return os.environ[GIT_SHA]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "ikd", "pyproject.toml")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def versions() -> dict[str, str]:
    """Python's and the main packages' versions (absent ones are left out)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def hardware() -> dict[str, Any]:
    """The machine: OS, CPU model and count, memory."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        # the CPUs this process may use (a container's share), not the host's
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": platform.processor() or "",
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        info["cpu"] = models[0] if models else info["cpu"]
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = next(
            (line.split()[1] for line in meminfo.read_text().splitlines() if "MemTotal" in line),
            None,
        )
        info["memory_gib"] = round(int(total) / 2**20, 1) if total else None
    return info
