"""What glibc's allocator settings do to a training step: page faults, kernel time, step time.

    python benchmarks/bench_malloc.py [--steps 20] [--rounds 3] [--threads 2]

Each setting runs in a fresh process (glibc reads its MALLOC_* variables at start-up), the
settings interleaved round by round so drifts in the machine's speed hit all alike: fwd + bwd +
Adam steps of the laptop preset's resnet18 student on a batch of 128 random 32² spectrograms (3 channels, as the dataset stores them)
(what an epoch repeats ~31 times), after 3 warm-up steps. Per setting, the median over rounds of:
seconds per step, minor page faults per step, user and kernel CPU seconds per step.

Settings: glibc's defaults; `MALLOC_MMAP_THRESHOLD_` at glibc's cap (32 MiB: larger blocks than
that still come from mmap) with `MALLOC_TRIM_THRESHOLD_` and `MALLOC_TOP_PAD_` raised, so freed
memory stays in the heap for the next step instead of going back to the kernel and faulting in
again; and the same set by `mallopt` once the process runs (`ikd.allocator.keep_freed_memory`,
which the `ikd` command calls first). Prints Markdown rows for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SETTINGS = {
    "glibc defaults": {},
    "MALLOC_* variables: mmap threshold 32 MiB, trim and top pad 1 GiB": {
        "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
        "MALLOC_TRIM_THRESHOLD_": str(2**30),
        "MALLOC_TOP_PAD_": str(2**30),
    },
    "the same by mallopt at start-up (ikd.allocator, what `ikd` does)": {"IKD_BENCH_MALLOPT": "1"},
}

STEP = """
import json, os, resource, sys, time
if os.environ.get("IKD_BENCH_MALLOPT"):
    from ikd.allocator import keep_freed_memory
    keep_freed_memory()
import torch
from ikd.models.students import Student
steps, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = Student.from_name("resnet18", 36)
optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
images, labels = torch.randn(128, 3, 32, 32), torch.randint(0, 36, (128,))
def step():
    optimizer.zero_grad(set_to_none=True)
    _, logits = net(images)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    optimizer.step()
for _ in range(3):
    step()
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds / steps, "faults": (after.ru_minflt - before.ru_minflt) / steps,
                  "user": (after.ru_utime - before.ru_utime) / steps,
                  "kernel": (after.ru_stime - before.ru_stime) / steps}))
"""


def measure(env: dict[str, str], steps: int, threads: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", STEP, str(steps), str(threads)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, env in SETTINGS.items():
            results[name].append(measure(env, args.steps, args.threads))
    base = statistics.median(r["seconds"] for r in results["glibc defaults"])
    print("| allocator setting | s / step | ratio | minor faults / step | user s / step | "
          "kernel s / step |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        print(f"| {name} | {median['seconds']:.3f} | {median['seconds'] / base:.2f}× "
              f"| {median['faults']:.0f} | {median['user']:.3f} | {median['kernel']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
