"""The jobs of tests/test_cluster.py, run from the session's start in a thread of their own
(conftest.py's `cluster_jobs`) while the other tests run, as the main job is: on a Ray cluster
of two nodes on this machine (`ikd.cluster.LocalCluster`, NODE_CPUS each), every root in a bucket
of the session's S3 server (conftest.py's `s3_server`), submitted with the Job SDK.

1. `ikd train` with 2 Ray Train workers, one per node (resources.placement=SPREAD), each
   reading the dataset from the bucket. Node "b" is killed once the run has recorded an epoch;
   a new "b" joins (as an autoscaler replaces a lost node).
2. `ikd study` of a small study (two trials at once, two final runs at once), once the Ray
   Train run has ended. "b" is killed once a tuning trial on it is past a checkpoint, replaced,
   and killed again once a final run on it is past a checkpoint.
3. The same `ikd study` submitted again.

What each saw is kept for the tests to assert; the cluster is stopped at the end."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import stand_ins
import yaml

from ikd.cluster import LocalCluster, poll, wait_for_job
from ikd.provenance import REPOSITORY
from ikd.storage import Location, location, read_json
from ikd.train.ray_train import WORKER_NODES
from ikd.train.runs import METRICS, RUN, read_metrics

# a lost node is declared dead after ~1.5 s (Ray's default: ~15-30 s), so work moves on sooner
FAST_DEATH = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
# 3 CPUs a node (logical: `ray start` takes whole ones): two trials (2 each) do not fit on one,
# so the study's two trials at once run one on each node
NODE_CPUS = 3
# The runs' student, on the nodes: a tiny network whose forward passes wait 0.5 s each, so a
# study run's epoch (2 batches and val's) lasts ~1.5 s and the Ray Train run's (4 and val's) ~2.5 s
# however busy the machine: a run is killed once it has recorded an epoch (seen within ~0.5 s),
# while later ones are still to come. It burns no CPU and writes checkpoints of kilobytes.
STUDENT = "tests.stand_ins:slow_backbone"
WAIT = {stand_ins.WAIT: "0.5"}
# where every process of the cluster finds `tests.stand_ins` (the jobs' working dir is on their
# path; the `ikd train` job has none)
PATH = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
}
EPOCHS = 8  # a study run's
TRAIN_EPOCHS = 6  # the Ray Train run's
TRAIN = {
    "teacher.source": "trained",
    "train.method": "identitykd",
    "train.workers": 2,
    "train.epochs": TRAIN_EPOCHS,
    "train.batch_size": 8,
    "train.student": STUDENT,
    # each worker reads its data from the dataset's storage (the paper preset's way)
    "resources.data": "storage",
    "resources.placement": "SPREAD",
    "resources.cpus_per_worker": 1,
}
STUDY = f"""
from ikd.study import Study, Table, Variant, table_space

STUDY = Study(
    artefact="cluster check",
    variants=(Variant("baseline", {{"train.method": "baseline"}}, space=table_space("baseline")),),
    trials=2, seeds=2, test_trials=2, test_seeds=2, test_epochs={EPOCHS}, reevaluate=0,
    asha=False,  # which trials complete must not hang on the order they reach a rung in
    report=Table(labels={{"baseline": "Baseline"}}),
)
"""
# two trials at once, and two final runs: one on each node
STUDY_OVERRIDES = ["teacher.source=trained", f"train.student={STUDENT}",
                   "resources.concurrent_trials=2", "resources.cpus_per_worker=2"]  # fmt: skip
# what ikd writes: none of it may land on a node's disk
RECORDS = {"run.json", "metrics.jsonl", "table.csv", "table.md", "manifest.json", "study.json",
           "best_config.json", "test.json", "optuna.db", "state.pt"}  # fmt: skip


class ClusterJobs(threading.Thread):
    def __init__(self, dataset: Location, bucket: str, folder: Path) -> None:
        super().__init__(daemon=True)
        self.dataset, self.bucket, self.folder = dataset, bucket, folder
        # every location opened here, once: a test beside these jobs may point this process's
        # AWS_ENDPOINT_URL_S3 elsewhere for a while (tests/test_cluster.py's wrong endpoint)
        self.data = location(bucket) / "datasets"
        self.results = f"{bucket}/results"
        self.train_runs = location(f"{bucket}/runs")
        self.study_runs = location(self.results) / "runs" / "cluster_check"
        self.study = folder / "cluster_check.py"
        self.study.write_text(STUDY)  # before any test reads it (the one-node twin does at once)
        self.seen: dict[str, Any] = {"times": []}  # (what happened, seconds from the start)
        self._start = time.monotonic()
        self.error: BaseException | None = None
        # copied before the other tests start: some damage the session's dataset (and rebuild it)
        pafs.copy_files(dataset.path, (self.data / dataset.name).path,
                        destination_filesystem=self.data.fs)  # fmt: skip

    def run(self) -> None:
        try:
            # the jobs' temp files (the Optuna mirror's copy, staged results) go to a folder
            # of their own, checked below
            temp = self.folder / "tmp"
            temp.mkdir()
            with LocalCluster(
                cpus=NODE_CPUS,
                env={
                    **FAST_DEATH,
                    **WAIT,
                    **PATH,
                    "TMPDIR": str(temp),
                    stand_ins.MEET: str(self.folder / "meet"),
                },
            ) as cluster:
                cluster.add("b", cpus=NODE_CPUS)
                self._mark("cluster up")
                self._jobs(cluster)
                self.seen["again"] = wait_for_job(cluster.client(), self._submit(cluster), 300)
                self._mark("again: ended")
                # local working copies (the Optuna mirror's, a staged results folder) are gone
                self.seen["temp_copies"] = list(temp.glob("ikd-*"))
                disks = [temp for _, temp, _ in cluster.nodes.values()] + cluster.disks
                self.seen["disks"] = len(disks)
                self.seen["left_on_disks"] = [
                    p for temp in disks for p in Path(temp).rglob("*")
                    if p.name in RECORDS or p.suffix == ".parquet"
                ]  # fmt: skip
        except BaseException as error:  # the tests report it
            self.error = error

    def _mark(self, event: str) -> None:
        """When something happened: the times go into a failure's message."""
        self.seen["times"].append((event, round(time.monotonic() - self._start, 1)))

    def outcome(self, seconds: float = 900) -> dict[str, Any]:
        """What the jobs saw, once they are done."""
        self.join(seconds)
        assert not self.is_alive(), "the cluster jobs did not finish"
        if self.error is not None:
            raise self.error
        return self.seen

    def _jobs(self, cluster: LocalCluster) -> None:
        """The Ray Train run, then the study: "b" killed once the run has recorded an epoch
        (a rank on each node) and replaced; once the run has ended, the study submitted; "b"
        killed once a trial on it is past a checkpoint, replaced, and killed again once a final
        run on it is. One job and one kill at a time, each when the run it aims at is sure to
        be there: a kill timed for two jobs at once would hang on which of them starts sooner,
        and the study's trials (one per node) on where the other job's workers sit."""
        client = cluster.client()
        command = [sys.executable, "-m", "ikd", "train", "--preset", "smoke", "--study", "nodes",
                   f"data.root={self.data}", f"train.runs_root={self.train_runs}",
                   *(f"{key}={value}" for key, value in TRAIN.items())]  # fmt: skip
        nodes, train = cluster.alive(), client.submit_job(entrypoint=shlex.join(command))
        final = self.train_runs / "nodes" / "final"
        run = self._wait(lambda: next(iter(final.folders()), None), client, train)
        self._wait(lambda: len(read_metrics(run / METRICS)) >= 1, client, train)
        placed = {read_json(path)["node_id"] for path in (run / WORKER_NODES).glob("rank*.json")}
        epochs = len(read_metrics(run / METRICS))
        self._mark(f"train: killing b after {epochs} epoch(s)")
        cluster.kill("b")
        cluster.add("b", cpus=NODE_CPUS)
        self.seen["train"] = {"nodes": nodes, "placed": placed, "run": run, "killed": epochs,
                              "ended": wait_for_job(client, train, 300)}  # fmt: skip
        self._mark("train: ended")
        self._released(cluster)
        study_nodes, study = cluster.alive(), self._submit(cluster)
        killed = {}
        for stage in ("tune", "final"):
            node = cluster.alive()["b"]
            killed[stage] = self._wait(
                lambda s=stage, n=node: _running_on(self.study_runs / s, n), client, study
            )
            self._mark(f"{stage}: killing b {killed[stage]}")
            cluster.kill("b")
            if stage == "tune":
                cluster.add("b", cpus=NODE_CPUS)
        self.seen["study"] = {"nodes": study_nodes, "killed": killed,
                              "ended": wait_for_job(client, study, 600)}  # fmt: skip
        self._mark("study: ended")

    def _submit(self, cluster: LocalCluster) -> str:
        """`ikd study` as cluster/README.md submits it: the working dir with runtime_env.yaml's
        excludes, every root in the bucket."""
        runtime_env = yaml.safe_load((REPOSITORY / "cluster" / "runtime_env.yaml").read_text())
        command = [sys.executable, "-m", "ikd", "study", str(self.study), "--preset", "smoke",
                   "--quick", "--results", self.results, f"data.root={self.data}",
                   *STUDY_OVERRIDES]  # fmt: skip
        return cluster.client().submit_job(
            entrypoint=shlex.join(command),
            runtime_env={**runtime_env, "working_dir": str(REPOSITORY)},
        )

    def _wait(self, found: Any, client: Any, job: str, seconds: float = 300) -> Any:
        """Poll `found()` until it gives something; fail if the job ends or time runs out."""
        value = poll(found, seconds, stop=lambda: client.get_job_status(job).is_terminal())
        if not value:
            raise AssertionError(
                f"not seen before the job ended ({self.seen['times']}; the study's runs: "
                f"{self._placed()}): {client.get_job_logs(job)[-3000:]}"
            )
        return value

    def _released(self, cluster: LocalCluster, seconds: float = 120) -> None:
        """Wait until the Ray Train run's placement group is gone, its CPUs free for the study's
        trials (one on each node); fail naming what holds them."""
        from ray.util.state import list_placement_groups

        def held() -> list[tuple[str, str, Any]]:
            groups = list_placement_groups(address=cluster.address, detail=True)
            return [(g.placement_group_id[:8], g.state, g.bundles) for g in groups
                    if g.state != "REMOVED"]  # fmt: skip

        if not poll(lambda: not held(), seconds):
            raise AssertionError(f"placement groups still held ({self.seen['times']}): {held()}")
        self._mark("train: its placement group removed")

    def _placed(self) -> dict[str, list[str]]:
        """Each study run's status and the nodes it trained on, for a failure's message."""
        return {
            f"{stage}/{run.name}": [record.get("status"), *(
                start["node_id"][:8] for start in record.get("trained_on", []))]
            for stage in ("tune", "final") for run in (self.study_runs / stage).folders()
            if (record := read_json(run / RUN) or {})
        }  # fmt: skip


def _running_on(folder: Location, node: str) -> tuple[str, int] | None:
    """A run under `folder` training on `node`, past its first checkpoint: (its name, epochs)."""
    for run in folder.folders():
        record = read_json(run / RUN) or {}
        epochs = len(read_metrics(run / METRICS))
        on = (record.get("trained_on") or [{}])[-1].get("node_id")
        if record.get("status") == "running" and on == node and epochs >= 1:
            return run.name, epochs
    return None
