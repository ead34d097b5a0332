"""ikd.storage: the dataset, the run storage and the rendered results through one pyarrow
filesystem layer — a local path, and an fsspec in-memory filesystem wrapped in pyarrow's
`PyFileSystem` that, like an object store, refuses appends and renames (so neither a `file://`
shortcut nor an append-mode `metrics.jsonl` can pass)."""

import json
import uuid

import fsspec
import pandas as pd
import pyarrow.fs as pafs
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from ikd.storage import Location, StorageError, location, read_json, write_json


class ObjectStore(MemoryFileSystem):
    """fsspec's in-memory filesystem without what object stores lack: appends and renames."""

    protocol = "objectstore"

    def open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise OSError(f"{path}: an object store has no append")
        return super().open(path, mode, **kwargs)

    def mv(self, *args, **kwargs):
        raise OSError("an object store has no rename")


fsspec.register_implementation("objectstore", ObjectStore, clobber=True)


@pytest.fixture
def store():
    """A fresh root in the in-memory object store, emptied afterwards."""
    root = f"/ikd-{uuid.uuid4().hex[:8]}"
    yield f"objectstore://{root}"
    fs = ObjectStore()
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("kind", ["local", "objectstore"])
def test_a_location_reads_writes_lists_and_removes_whole_files(kind, tmp_path, store):
    root = location(tmp_path if kind == "local" else store)
    assert isinstance(root.fs, pafs.LocalFileSystem if kind == "local" else pafs.PyFileSystem)
    write_json(root / "a" / "x.json", {"x": 1})
    (root / "a" / "y.txt").write_text("why")
    (root / "a" / "y.txt").write_text("y")  # a rewrite replaces the whole file
    assert read_json(root / "a" / "x.json") == {"x": 1} and read_json(root / "none") is None
    assert [p.name for p in (root / "a").iterdir()] == ["x.json", "y.txt"]  # no .part left
    assert [p.name for p in (root / "a").glob("*.txt")] == ["y.txt"]
    assert (root / "a" / "y.txt").read_text() == "y" and (root / "a").is_dir()
    assert (root / "a").size() == len(json.dumps({"x": 1}, indent=2)) + 1
    assert location(str(root / "a" / "x.json")) == root / "a" / "x.json"  # str() round-trips
    (root / "a").remove()
    (root / "a").remove()  # absent: nothing to do
    assert not (root / "a").exists() and root.glob("*") == []


@pytest.mark.parametrize(
    "uri", ["s3://bucket/runs?region=us-east-1&endpoint_override=localhost:9", "gs://bucket/runs"]
)
def test_a_cloud_uri_keeps_its_bucket_and_options_through_str(uri):
    """Run and dataset folders travel as strings (to Ray workers, into run.json): a child's
    string opens the same filesystem at the child's path (no network is touched)."""
    child = location(uri) / "table3" / "tune"
    again = location(str(child))
    assert again == child and again.path == "bucket/runs/table3/tune"
    assert type(again.fs) is type(child.fs) and not again.is_local


def test_a_remote_location_is_not_a_local_path_and_bad_uris_are_named(store):
    with pytest.raises(TypeError, match="not on a local file system"):
        open(location(store) / "x")  # noqa: SIM115 — would write to the local disk otherwise
    with pytest.raises(StorageError, match="nosuchscheme://x"):
        location("nosuchscheme://x")


def test_a_run_reads_its_dataset_and_writes_its_records_through_the_storage_layer(
    smoke_dataset, tmp_path, store, monkeypatch
):
    """The dataset copied into the object store, a study's final stage trains there (plain loop)
    and its report renders from it: every record is written whole, none lands on the local
    disk, and the table holds the test accuracy the run recorded in the store."""
    from ikd.tune.stages import run_study

    _, folder, _ = smoke_dataset
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a path would land here
    data = location(store) / "datasets"
    pafs.copy_files(folder.path, (data / folder.name).path, destination_filesystem=data.fs)
    study = tmp_path / "storage_check.py"
    study.write_text(
        "from ikd.study import Study, Table, Variant\n"
        "STUDY = Study(artefact='storage check', seeds=1, test_seeds=1, test_epochs=2,\n"
        "    variants=(Variant('baseline', {'train.method': 'baseline'}),),\n"
        "    report=Table(labels={'baseline': 'Baseline'}))\n"
    )
    results = tmp_path / "results"
    run = run_study(
        study,
        preset="smoke",
        # each final run reads its splits from the store itself (the paper preset's way), not
        # from splits the study read once
        overrides={
            "data.root": str(data),
            "teacher.source": "trained",
            "resources.data": "storage",
        },
        stages=("final", "report"),
        results_root=results,
        quick=True,
        storage=f"{store}/runs",
    )
    (finals,) = run.final_records().values()
    (record,) = finals
    run_dir = record.folder
    assert isinstance(run_dir, Location) and str(run_dir).startswith(f"{store}/runs/storage_check")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "run.json", "metrics.jsonl", "test.json"} <= names
    assert {"test_predictions.parquet", "checkpoints"} <= names
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert record.status == "complete" and record.metrics == [json.loads(x) for x in lines]
    (checkpoint,) = (run_dir / "checkpoints").iterdir()  # the model only, once finished
    assert read_json(checkpoint / "epoch.json") == {"epoch": 1, "model_only": True}
    assert not (tmp_path / "results" / "runs").exists()  # nothing of the run on the local disk
    assert not [p for p in tmp_path.rglob("*") if "objectstore" in p.name]
    table = pd.read_csv(results / "storage_check" / "table.csv")
    test = read_json(run_dir / "test.json")
    assert table["acc_mean"].iloc[0] == pytest.approx(100 * test["test/acc"], abs=1e-4)
    provenance = read_json(results / "storage_check" / "provenance.json")
    assert provenance["dataset"]["manifest_sha256"]  # read from the store
