"""Ray Data's two Parquet readers on a built dataset: `ikd.data.pipeline.read_parquet` (Ray's
first datasource, read tasks) against Ray 2.60's default (its second, which lists files through a
pool of `FooterReader` actors, a process each).

    python benchmarks/bench_reads.py [--preset laptop] [--rounds 2] [--repeats 3] [KEY=VALUE ...]

The dataset must be built (`ikd data build` with the same preset and overrides). Each reader runs
in a fresh process with a local Ray of 2 CPUs, the rounds interleaved (A B A B: the machine's
speed drifts). In it: Ray's start, then `--repeats` times the train and val splits as a Ray
Train run through the object store reads them (`read_split(..., decode=False)`) and the views
stage's read of the build's pairs/ (its good rows, the error column dropped), each
materialized. Reported: seconds of each read (median),
the process's whole wall time (Ray's start and stop included), and the machine's busy CPU seconds
over it (`/proc/stat`: run it on a quiet machine; the readers' actors are gone before the process
ends, so their CPU is counted only this way). Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

READERS = ("ikd", "ray-default")
RESULT = "bench_reads:"  # the child's line among whatever Ray prints


def child(reader: str, preset: str, overrides: list[str], repeats: int) -> None:
    import ray
    from ray.data.expressions import col

    import ikd.data.pipeline as pipeline
    from ikd.cluster import init_ray
    from ikd.config import load_config
    from ikd.data import schema
    from ikd.data.dataset import PAIRS, dataset_folder, open_dataset

    if reader == "ray-default":
        pipeline.read_parquet = lambda path, filesystem, **options: ray.data.read_parquet(
            path, filesystem=filesystem, **options
        )
    config = load_config(preset, overrides, warn=False)
    init_ray(2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = open_dataset(dataset_folder(config), config)
    pairs = dataset.folder / PAIRS
    reads: dict[str, Callable[[], Any]] = {  # what Ray Train through the object store reads
        "train split": lambda: pipeline.read_split(dataset, "train", decode=False),
        "val split": lambda: pipeline.read_split(dataset, "val", decode=False),
        "pairs/ (the views stage)": lambda: (
            pipeline.read_parquet(pairs.path, pairs.fs)
            .filter(expr=col(schema.ERROR) == "")
            .drop_columns([schema.ERROR])
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in reads}
    for _ in range(repeats):
        for name, read in reads.items():
            began = time.perf_counter()
            read().materialize()
            seconds[name].append(time.perf_counter() - began)
    print(RESULT, json.dumps({"reads": seconds}), flush=True)
    ray.shutdown()


def _busy() -> float:
    """The machine's busy CPU seconds so far (/proc/stat: user, nice, system, irq and softirq;
    not idle, iowait, a VM's steal, nor guest time, which user already holds)."""
    with open("/proc/stat") as stat:
        user, nice, system, _, _, irq, softirq, *_ = (int(v) for v in stat.readline().split()[1:])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=READERS, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.root=...")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.preset, args.overrides, args.repeats)
        return
    results: dict[str, list[dict]] = {reader: [] for reader in READERS}
    for _ in range(args.rounds):
        for reader in READERS:
            command = [sys.executable, __file__, "--child", reader, "--preset", args.preset,
                       "--repeats", str(args.repeats), *args.overrides]  # fmt: skip
            busy, start = _busy(), time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{reader}: exit {out.returncode}\n{out.stderr[-3000:]}")
            (line,) = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
            record = json.loads(line.removeprefix(RESULT))
            record.update(wall=time.perf_counter() - start, cpu=_busy() - busy)
            results[reader].append(record)
    print(f"Parquet reads of the {args.preset} dataset, {args.rounds} fresh processes per reader "
          f"(interleaved), {args.repeats} reads each (median s)\n")  # fmt: skip
    names = list(results[READERS[0]][0]["reads"])
    print(f"| reader | {' | '.join(names)} | process wall (s) | machine CPU (s) |")
    print("|---|" + "---|" * (len(names) + 2))
    for reader, runs in results.items():
        cells = [", ".join(f"{statistics.median(run['reads'][name]):.2f}" for run in runs)
                 for name in names]  # fmt: skip
        walls = ", ".join(f"{run['wall']:.1f}" for run in runs)
        cpus = ", ".join(f"{run['cpu']:.1f}" for run in runs)
        print(f"| {reader} | {' | '.join(cells)} | {walls} | {cpus} |")


if __name__ == "__main__":
    main()
