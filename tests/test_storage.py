"""ikd.storage: the dataset, the run storage and the rendered results through one pyarrow
filesystem layer — a local path, and an fsspec in-memory filesystem wrapped in pyarrow's
`PyFileSystem` that, like an object store, refuses appends and renames (so neither a `file://`
shortcut nor an append-mode `metrics.jsonl` can pass). A study in an S3 bucket, end to end:
tests/test_cluster.py."""

import json
import uuid

import fsspec
import pyarrow.fs as pafs
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from ikd.storage import StorageError, location, read_json, write_json


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


FILESYSTEMS = {"local": pafs.LocalFileSystem, "objectstore": pafs.PyFileSystem,
               "s3": pafs.S3FileSystem}  # fmt: skip


@pytest.mark.parametrize("kind", FILESYSTEMS)
def test_a_location_reads_writes_lists_and_removes_whole_files(kind, tmp_path, store, request):
    """The same on a local disk, the in-memory store and an S3 API (the session's moto server,
    conftest.py), where writing a file leaves no folder marker objects behind."""
    uris = {"local": tmp_path, "objectstore": store}
    root = location(uris.get(kind) or request.getfixturevalue("s3") + "/root")
    assert isinstance(root.fs, FILESYSTEMS[kind])
    write_json(root / "a" / "x.json", {"x": 1})
    (root / "a" / "y.txt").write_text("why")
    (root / "a" / "y.txt").write_text("y")  # a rewrite replaces the whole file
    assert read_json(root / "a" / "x.json") == {"x": 1} and read_json(root / "none") is None
    assert [p.name for p in (root / "a").iterdir()] == ["x.json", "y.txt"]  # no .part left
    assert [p.name for p in (root / "a").glob("*.txt")] == ["y.txt"]
    assert (root / "a" / "y.txt").read_text() == "y" and (root / "a").is_dir()
    assert (root / "a").size() == len(json.dumps({"x": 1}, indent=2)) + 1
    assert location(str(root / "a" / "x.json")) == root / "a" / "x.json"  # str() round-trips
    assert [p.name for p in root.folders()] == ["a"]
    if kind == "s3":  # the keys are the files' own: no empty "folder/" objects
        import boto3

        bucket, _, prefix = root.path.partition("/")
        listed = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
        assert sorted(o["Key"] for o in listed) == [f"{prefix}/a/x.json", f"{prefix}/a/y.txt"]
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


@pytest.mark.parametrize("query, delayed", [("", True), ("?allow_delayed_open=false", False)])
def test_s3_opens_writes_at_close_unless_the_uri_says_otherwise(query, delayed):
    """A small record is one PUT with a delayed open, three requests without (a multipart
    upload); the URI's own setting wins and its text stays as given."""
    found = location(f"s3://bucket/runs{query}")
    (options,) = found.fs.__reduce__()[1]  # S3FileSystem's options, as pickling sends them
    assert options["allow_delayed_open"] is delayed
    assert str(found) == f"s3://bucket/runs{query}"


def test_a_store_that_says_not_found_as_a_bare_oserror_reads_as_absent(store, monkeypatch):
    """GCS (arrow's gcsfs) raises a plain OSError for a missing object: read as absent; the
    same error for a file that is there is raised."""
    from ikd.storage import Location

    def unreadable(self):
        raise OSError("GCS error: not found")

    monkeypatch.setattr(Location, "read_bytes", unreadable)
    root = location(store)
    assert read_json(root / "none.json") is None
    write_json(root / "there.json", {})
    with pytest.raises(OSError, match="GCS error"):
        read_json(root / "there.json")


@pytest.mark.parametrize("kind", ["objectstore", "local"])
def test_a_json_file_read_while_an_object_store_rewrites_it_is_read_again(
    kind, store, tmp_path, monkeypatch
):
    """pyarrow reads an object as its size, then its bytes up to that size: rewritten between the
    two, a record reads as the new one cut at the old length (seen on moto's S3). Such a read
    is tried again; on a local disk (never half-written) the error stands at once."""
    from ikd.storage import Location

    old, new = {"status": "running"}, {"status": "complete", "trained_on": [{"epoch": 3}]}
    record = location(store if kind == "objectstore" else str(tmp_path)) / "run.json"
    write_json(record, old)
    torn = json.dumps(new, indent=2).encode()[: len(json.dumps(old, indent=2))]
    reads, racing_reads = [], [1]  # the record's reads; how many of them race a rewrite
    whole = Location.read_bytes

    def racing(self):
        if self.path != record.path:  # (the cluster jobs read too, in their thread)
            return whole(self)
        reads.append(self)
        return torn if len(reads) <= racing_reads[0] else whole(self)

    write_json(record, new)
    monkeypatch.setattr(Location, "read_bytes", racing)
    if kind == "local":
        with pytest.raises(ValueError):
            read_json(record)
        assert len(reads) == 1
    else:
        assert read_json(record) == new and len(reads) == 2
        reads.clear()
        racing_reads[0] = 10
        with pytest.raises(ValueError):  # torn every time: the error stands
            read_json(record, tries=3)
        assert len(reads) == 3


def test_a_remote_location_is_not_a_local_path_and_bad_uris_are_named(store):
    with pytest.raises(TypeError, match="not on a local file system"):
        open(location(store) / "x")  # noqa: SIM115 — would write to the local disk otherwise
    with pytest.raises(StorageError, match="nosuchscheme://x"):
        location("nosuchscheme://x")
