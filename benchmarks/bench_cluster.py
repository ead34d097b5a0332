"""A smoke study as a Ray job on one node against two (issue 24): the same study (one tuned
variant, 4 trials two at a time, 2 final runs at once, 3 epochs, no ASHA), submitted with the Job
SDK to a `LocalCluster` of one node with 2 CPUs, then of two nodes with 1 CPU each, alternately,
each into a fresh results folder on the local disk or, with `--s3`, in a bucket of moto's S3
server. Per shape: the job's wall time, the training inside it (the runs' epoch seconds), and
the overhead per run (wall × 2 CPUs − training, over the runs: start-up, hand-off, records).

    python benchmarks/bench_cluster.py --dataset datasets/smoke-<hash> [--repeats 2] [--s3]
"""

from __future__ import annotations

import os

# Ray's clients read it once, at import: the Job SDK here talks to a head with token auth on
os.environ.setdefault("RAY_AUTH_MODE", "token")

import argparse
import contextlib
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ikd.cluster import LocalCluster, wait_for_job
from ikd.storage import location, read_json
from ikd.train.runs import METRICS, read_metrics

STUDY = """
from ikd.study import Study, Table, Variant, table_space

STUDY = Study(
    artefact="cluster benchmark",
    variants=(Variant("baseline", {"train.method": "baseline"}, space=table_space("baseline")),),
    trials=4, seeds=2, test_trials=4, test_seeds=2, test_epochs=3, reevaluate=0, asha=False,
    report=Table(labels={"baseline": "Baseline"}),
)
"""
OVERRIDES = ["teacher.source=trained", "train.student=mobilenet", "resources.concurrent_trials=2"]


def one_job(shape: str, dataset: str, root: str, study: Path) -> dict:
    nodes = [("head", 2)] if shape == "one node" else [("head", 1), ("b", 1)]
    with LocalCluster(cpus=nodes[0][1]) as cluster:
        for name, cpus in nodes[1:]:
            cluster.add(name, cpus=cpus)
        command = [sys.executable, "-m", "ikd", "study", str(study), "--preset", "smoke",
                   "--quick", "--results", root, f"data.root={dataset}", *OVERRIDES]  # fmt: skip
        client = cluster.client()
        start = time.perf_counter()
        job = client.submit_job(entrypoint=shlex.join(command))
        status, logs = wait_for_job(client, job, 1200)
        wall = time.perf_counter() - start
    if str(status) != "SUCCEEDED":
        raise SystemExit(f"{shape}: the job {status}: {logs[-2000:]}")
    runs = location(root) / "runs" / study.stem
    folders = [run for stage in ("tune", "final") for run in (runs / stage).folders()]
    training = sum(m["seconds"] for run in folders for m in read_metrics(run / METRICS))
    nodes_used = {
        s["node_id"] for run in folders for s in read_json(run / "run.json")["trained_on"]
    }
    return {"wall": wall, "training": training, "runs": len(folders), "nodes": len(nodes_used)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a built smoke dataset folder")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--s3", action="store_true", help="dataset, runs and results in S3")
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"one node": [], "two nodes": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        study = Path(tmp) / "cluster_benchmark.py"
        study.write_text(STUDY)
        dataset = str(Path(args.dataset).resolve().parent)
        base = tmp
        if args.s3:
            import pyarrow.fs as pafs
            from bench_storage import _s3_bucket

            base = stack.enter_context(_s3_bucket())
            data = location(base) / "datasets"
            source = location(args.dataset)
            pafs.copy_files(source.path, (data / source.name).path, destination_filesystem=data.fs)
            dataset = str(data)
        for repeat in range(args.repeats):
            for shape in rows:
                rows[shape].append(one_job(shape, dataset, f"{base}/{shape[:3]}{repeat}", study))
    where = "an S3 API (moto's server)" if args.s3 else "the local disk"
    print(f"smoke study as a job, records on {where}; median of {args.repeats}\n")
    print("| cluster | wall (s) | training (s) | runs | nodes used | overhead per run (s) |")
    print("|---|---|---|---|---|---|")
    for shape, measured in rows.items():
        wall = statistics.median(m["wall"] for m in measured)
        training = statistics.median(m["training"] for m in measured)
        runs = measured[0]["runs"]
        print(f"| {shape} | {wall:.1f} | {training:.1f} | {runs} | {measured[0]['nodes']} | "
              f"{(2 * wall - training) / runs:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
