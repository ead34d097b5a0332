"""The cluster path on one machine, with the engines a cluster uses: two Ray nodes
(`ikd.cluster.LocalCluster`: each its own raylet, object store, workers and CPUs), jobs through
the Job SDK, an S3 API (moto's server, conftest.py's `s3_server`), and a node lost mid-training.
The jobs run in tests/cluster_jobs.py from the session's start; these tests read what they saw."""

import signal

import pytest
from cluster_jobs import EPOCHS, STUDY_OVERRIDES, TRAIN, TRAIN_EPOCHS

from ikd.cli import main
from ikd.errors import UserError
from ikd.provenance import REPOSITORY
from ikd.storage import location, read_json
from ikd.train.driver import evaluate_run, train_driver
from ikd.train.ray_train import WORKER_NODES
from ikd.train.runs import METRICS, RUN, read_metrics

pytestmark = pytest.mark.slow


def _epochs(run_dir):
    """A run's metric lines without their timings (what must match across runs)."""
    return [{k: v for k, v in m.items() if k != "seconds"} for m in read_metrics(run_dir / METRICS)]


def test_the_two_node_study_equals_a_single_node_run(cluster_jobs, smoke_dataset, tmp_path):
    """The same study in this process, on the session's one-node Ray and a local disk: the same
    trials and final runs (run folder names: hash and seed) with the same metrics, and so the
    same table. (It runs while the jobs may still run, before the other tests that wait for them.)"""
    from ikd.tune.stages import run_study

    config, _, _ = smoke_dataset
    here = tmp_path / "results"
    overrides = dict(item.split("=", 1) for item in STUDY_OVERRIDES)
    run_study(cluster_jobs.study, preset="smoke", results_root=here, quick=True,
              overrides={**overrides, "data.root": config.data.root})  # fmt: skip
    cluster_jobs.outcome()
    there = location(cluster_jobs.results)
    for stage in ("tune", "final"):
        ours = {r.name: r for r in (location(here) / "runs" / "cluster_check" / stage).folders()}
        theirs = {r.name: r for r in (there / "runs" / "cluster_check" / stage).folders()}
        assert sorted(ours) == sorted(theirs)
        for name, run in ours.items():
            assert _epochs(run) == _epochs(theirs[name]), (stage, name)
    table = "cluster_check/table.csv"
    assert (here / table).read_text() == (there / table).read_text()


def test_a_ray_train_run_across_two_nodes_survives_losing_one(
    cluster_jobs, smoke_dataset, tmp_path
):
    """Two DDP workers, one per node (resources.placement=SPREAD), checkpoints in S3; node "b"
    killed once the run has recorded an epoch: Ray Train restarts both workers on the nodes
    left, the run resumes from its checkpoint in S3 and ends with an undisturbed run's metrics.
    Here, on the session's one node, a rank that dies with no restart allowed stops the same run
    with one line."""
    from ray.job_submission import JobStatus

    config, _, _ = smoke_dataset
    # The last rank dies after the last epoch with no restart allowed: the run stops with a clear
    # error, its epochs recorded — an undisturbed run's (rank 0 may have marked it complete by
    # then).
    spec = {"preset": "smoke", "loop": "ray", "progress": False, "study": "broken",
            "data.root": config.data.root, "train.runs_root": str(tmp_path), **TRAIN}  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(UserError, match=r"0 restart\(s\) allowed \(rank \d: .*Run the same"):
        train_driver({**spec, "fail_at_epochs": (TRAIN_EPOCHS - 1,), "max_failures": 0})
    assert signal.getsignal(signal.SIGINT) is handler  # not Ray Train's, which keeps it
    (undisturbed,) = (tmp_path / "broken" / "final").iterdir()
    assert (undisturbed / f".fault-injected-epoch-{TRAIN_EPOCHS - 1}").exists()
    assert [m["epoch"] for m in _epochs(undisturbed)] == list(range(TRAIN_EPOCHS))

    seen = cluster_jobs.outcome()["train"]
    nodes, run, (status, logs) = seen["nodes"], seen["run"], seen["ended"]
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert run.name == undisturbed.name
    assert seen["placed"] == {nodes["head"], nodes["b"]}  # one rank on each node
    assert _epochs(run) == _epochs(undisturbed)
    record = read_json(run / RUN)
    assert record["status"] == "complete"
    workers = [start for start in record["trained_on"] if "rank" in start]
    assert {w["node_id"] for w in workers if w["from_epoch"] == 0} == seen["placed"]
    # restarted where the kill found them (an epoch recorded, or more), on the nodes left
    later = [w for w in workers if w["from_epoch"] > 0]
    assert later and min(w["from_epoch"] for w in later) >= seen["killed"] >= 1, record[
        "trained_on"
    ]
    assert nodes["b"] not in {w["node_id"] for w in later}, record["trained_on"]
    assert not (run / WORKER_NODES).exists()  # folded into run.json
    # Every rank evaluated rank 0's model: the checkpoint reproduces the logged val metrics.
    assert evaluate_run(run, "val")["val/per_identity"] == _epochs(run)[-1]["val/per_identity"]


def test_a_study_job_spreads_over_two_nodes_and_loses_no_work_when_one_dies(cluster_jobs, tmp_path):
    """Trials and final runs ran on both nodes; the trial and the final run whose node was killed
    went on from their last checkpoint in the bucket (no epoch twice, none lost); every trial of
    the budget is there once, in the run folders and in the Optuna mirror alike."""
    import optuna
    from ray.job_submission import JobStatus

    seen = cluster_jobs.outcome()["study"]
    status, logs = seen["ended"]
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    runs = location(cluster_jobs.results) / "runs" / "cluster_check"
    records = {stage: {run.name: read_json(run / RUN) for run in (runs / stage).folders()}
               for stage in ("tune", "final")}  # fmt: skip
    assert len(records["tune"]) == 2 and len(records["final"]) == 2  # the budget, none twice
    assert all(r["status"] == "complete" for stage in records.values() for r in stage.values())
    nodes = {start["node_id"] for stage in records.values() for r in stage.values()
             for start in r["trained_on"]}  # fmt: skip
    assert len(nodes) == 3  # the head, the "b" the study started with and the one replacing it
    first = seen["nodes"]  # the two trials at once: one on each node
    tuned_on = {r["trained_on"][0]["node_id"] for r in records["tune"].values()}
    assert tuned_on == {first["head"], first["b"]}
    for stage, (name, epochs) in ((s, seen["killed"][s]) for s in ("tune", "final")):
        starts = records[stage][name]["trained_on"]
        # resumed where its node died, not started again
        assert len(starts) == 2 and starts[1]["from_epoch"] >= epochs >= 1, (stage, name, starts)
        assert [m["epoch"] for m in read_metrics(runs / stage / name / METRICS)] == list(
            range(EPOCHS)
        )
    local = tmp_path / "optuna.db"  # the mirror's copy in the bucket
    local.write_bytes((runs / "optuna.db").read_bytes())
    study = optuna.load_study(study_name="cluster_check/baseline", storage=f"sqlite:///{local}")
    assert sorted(t.user_attrs["run"] for t in study.trials) == sorted(records["tune"])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_everything_lies_in_the_bucket_and_renders_from_it(cluster_jobs):
    """The bucket holds the dataset, the run records and the results; no node's disk (their
    temp dirs hold the job's working dir) holds any of them; a second submission trains nothing;
    `ikd report` renders the study from the bucket, the overview beside it."""
    from ray.job_submission import JobStatus

    seen = cluster_jobs.outcome()
    root = location(cluster_jobs.results)
    assert [f for f in cluster_jobs.data.files() if f.name == "manifest.json"]
    assert (root / "cluster_check" / "study.json").exists()
    for run in (root / "runs" / "cluster_check" / "final").folders():
        names = {p.name for p in run.iterdir()}
        assert {"config.json", "run.json", "metrics.jsonl", "test.json"} <= names
        assert {"test_predictions.parquet", "checkpoints"} <= names
        (checkpoint,) = (run / "checkpoints").iterdir()  # the model only, once finished
        assert read_json(checkpoint / "epoch.json") == {"epoch": EPOCHS - 1, "model_only": True}
    provenance = read_json(root / "cluster_check" / "provenance.json")
    assert provenance["dataset"]["manifest_sha256"]  # read from the bucket
    # the head's and the three "b"s' (each killed): the jobs' working dir lies in the head's
    assert seen["disks"] == 4 and seen["left_on_disks"] == []
    assert seen["temp_copies"] == []
    status, logs = seen["again"]
    assert status == JobStatus.SUCCEEDED and "up to date" in logs, logs[-3000:]
    table = (root / "cluster_check" / "table.md").read_text()
    assert main(["report", "--results", cluster_jobs.results, "cluster_check"]) == 0
    assert (root / "cluster_check" / "table.md").read_text() == table
    assert (root / "README.md").read_text().startswith("# Results: results")  # the overview


def test_a_wrong_endpoint_or_a_missing_bucket_is_one_line(cluster_jobs, s3, monkeypatch, capsys):
    cluster_jobs.outcome()  # their thread reads the bucket through the endpoint set below
    args = ["study", str(REPOSITORY / "studies" / "table3_methods.py"), "--preset", "smoke"]
    assert main([*args, "--results", "s3://ikd-no-such-bucket/results"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ikd: error: s3://ikd-no-such-bucket/results: no bucket")
    assert err.count("\n") == 1
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert main([*args, "--results", f"{s3}/results"]) == 2
    err = capsys.readouterr().err
    assert "the object store does not answer" in err and err.count("\n") == 1
