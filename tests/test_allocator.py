"""ikd.allocator: freed memory stays in the heap between training steps (issue 23)."""

import json
import subprocess
import sys

# A step's worth of churn: six 8 MiB buffers (activations) allocated, written, then all freed.
CHURN = """
import json, os, resource, sys
if sys.argv[1] == "keep":
    from ikd.allocator import keep_freed_memory
    keep_freed_memory()
import numpy as np
def step():
    buffers = [np.ones(2**20) for _ in range(6)]  # 6 × 8 MiB, every page written
    del buffers
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""


def _churn(mode: str) -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* of the caller's
    done = subprocess.run([sys.executable, "-c", CHURN, mode], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def test_freed_buffers_are_reused_without_faulting_in_again_and_children_inherit_it():
    """With glibc's defaults the freed 48 MiB at the heap's top is trimmed (handed back to the
    kernel) and the next step faults it in again, page by page; kept,
    the 20 steps fault (almost) not at all. The settings reach the processes started from here
    (a local Ray's workers) through the environment."""
    default, kept = _churn("default"), _churn("keep")
    assert default["faults"] > 2000  # at least a few trims (61,160 here)
    assert kept["faults"] < default["faults"] / 10
    assert kept["env"]["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)


def test_the_cluster_runtime_env_sets_the_same_values():
    """Workers a cluster's own raylets start do not inherit the driver's environment: the job's
    runtime env (cluster/runtime_env.yaml) sets the same variables."""
    from pathlib import Path

    import yaml

    from ikd.allocator import SETTINGS

    runtime_env = Path(__file__).resolve().parents[1] / "cluster" / "runtime_env.yaml"
    env_vars = yaml.safe_load(runtime_env.read_text())["env_vars"]
    assert {name: int(env_vars[name]) for name in SETTINGS} == {
        name: value for name, (_, value) in SETTINGS.items()
    }
