"""Where ikd keeps what it writes: local paths and URIs through one pyarrow filesystem layer.

A `Location` is a place in a pyarrow filesystem with the small part of pathlib that ikd uses
(`/`, `name`, `parent`, `exists`, `glob`, `read_bytes`, `write_bytes`, `remove`, …). The dataset
root, the run storage (`train.runs_root`) and Tune's experiment storage take any of:

- a path (local, or a shared file system mounted on every node): pyarrow's `LocalFileSystem`;
- a URI pyarrow opens itself (`file://`, `s3://`, `gs://`, `hdfs://`): `FileSystem.from_uri`,
  as Ray Train and Tune open their `storage_path`;
- a URI of any other fsspec filesystem (`memory://`, `az://`, …): the fsspec implementation
  wrapped in pyarrow's `PyFileSystem(FSSpecHandler(...))`, as Ray does with a
  `storage_filesystem` it is handed.

Everything is written whole, as object stores need (no append, no rename): a file's bytes are
complete in memory before its one write starts, so a killed writer leaves either nothing or a
file of its previous content; on a local disk the write goes to `<name>.part` first and is renamed
over the target, so a reader never sees half a file. (An object store's reader may: see
`read_json`.) A folder (a checkpoint) is complete when its marker file, written last, exists.

Imports nothing from ikd (the ground floor): the config, the data layer and training all use it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import posixpath
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs

_CHUNK = 1 << 20


class StorageError(OSError):
    """A storage that cannot be opened or reached (a bad URI, no credentials, no network)."""


class Location:
    """A file or folder in a pyarrow filesystem; compares, hashes and sorts by its URI."""

    __slots__ = ("_origin", "fs", "path")

    def __init__(
        self, fs: pafs.FileSystem, path: str, origin: tuple[str, str, str] = ("", "", "")
    ) -> None:
        # origin: the URI's scheme, the host that is not part of `path` (hdfs's namenode; an
        # s3/gs bucket is) and its query (e.g. s3's endpoint_override), kept for `str()`
        self.fs, self.path, self._origin = fs, path.rstrip("/") or "/", origin

    # -- naming ---------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def ray_filesystem(self) -> pafs.FileSystem | None:
        """What Ray Train's and Tune's `storage_filesystem` take: None (Ray's own) when local."""
        return None if self.is_local else self.fs

    @property
    def local(self) -> Path | None:
        """The local path (a local disk or a mounted shared file system), else None."""
        return Path(self.path) if self.is_local else None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path), self._origin)

    def __truediv__(self, part: str | os.PathLike) -> Location:
        return Location(self.fs, posixpath.join(self.path, os.fspath(part)), self._origin)

    def __str__(self) -> str:
        if self.is_local:
            return self.path
        scheme, host, query = self._origin
        path = self.path if not host or self.path.startswith("/") else f"/{self.path}"
        return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __fspath__(self) -> str:
        """Only a local location is a path: `open()`/`Path()` of an object store's key would
        silently write to the local disk instead."""
        if not self.is_local:
            raise TypeError(f"{self} is not on a local file system; use its Location methods")
        return self.path

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other) if isinstance(other, Location) else NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: Location) -> bool:
        return str(self) < str(other)

    # -- reading --------------------------------------------------------------------------
    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path)
        except OSError as error:
            raise StorageError(f"{self}: {error}") from None

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def read_bytes(self) -> bytes:
        # a random-access file knows its size: one read of it all (S3: one GET), where a
        # stream's read() fetches it a small range at a time (70× slower on an S3 API)
        with self.fs.open_input_file(self.path) as handle:
            return handle.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def read_bytes_if_any(self) -> bytes | None:
        """The file's bytes, or None when there is no file there: one open, where `exists()`
        and then `read_bytes()` ask the store twice. (GCS says "not found" as a bare OSError,
        not FileNotFoundError: only then is existence asked.)"""
        try:
            return self.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            if not self.exists():
                return None
            raise

    def iterdir(self) -> list[Location]:
        """The folder's entries, sorted; none when it does not exist."""
        return sorted(Location(self.fs, info.path, self._origin) for info in self._entries())

    def folders(self) -> list[Location]:
        """The folder's subfolders, sorted; none when it does not exist or is a file."""
        if self.is_local and os.path.isfile(self.path):
            return []
        folders = (info for info in self._entries() if info.type == pafs.FileType.Directory)
        return sorted(Location(self.fs, info.path, self._origin) for info in folders)

    def _entries(self) -> list[pafs.FileInfo]:
        try:
            return self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as error:
            raise StorageError(f"{self}: {error}") from None

    def size(self) -> int:
        """Bytes of the file, or of every file under the folder."""
        info = self._info()
        if info.type != pafs.FileType.Directory:
            return max(info.size or 0, 0)
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True))
        return sum(i.size for i in infos if i.type == pafs.FileType.File)

    def files(self) -> list[Location]:
        """Every file under the folder, at any depth, sorted; none when it does not exist."""
        try:
            infos = self.fs.get_file_info(
                pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
            )
        except OSError as error:
            raise StorageError(f"{self}: {error}") from None
        files = (info for info in infos if info.type == pafs.FileType.File)
        return sorted(Location(self.fs, info.path, self._origin) for info in files)

    def relative_to(self, folder: Location) -> str:
        """This location's path below `folder` (ValueError when it is not below it)."""
        if not self.path.startswith(f"{folder.path.rstrip('/')}/"):
            raise ValueError(f"{self} is not inside {folder}")
        return self.path[len(folder.path.rstrip("/")) + 1 :]

    def glob(self, pattern: str) -> list[Location]:
        """The folder's entries whose name matches `pattern` (one level), sorted."""
        return [entry for entry in self.iterdir() if fnmatch.fnmatchcase(entry.name, pattern)]

    # -- writing --------------------------------------------------------------------------
    def mkdir(self) -> None:
        """Create the folder and its parents; a no-op on an object store, whose keys need no
        folders (pyarrow would write an empty marker object for each, a request apiece; it
        still writes one for a parent after deleting a file or folder in it)."""
        if self._origin[0] not in _BUCKETS:
            self.fs.create_dir(self.path, recursive=True)

    def write_with(self, write: Callable[[BinaryIO], object]) -> None:
        """Write the whole file with `write(handle)` (e.g. `torch.save`, `pq.write_table`):
        locally into `<name>.part`, renamed over the file; elsewhere into memory first, then as
        one object, so a killed writer never leaves half of one."""
        self.parent.mkdir()
        if self.is_local:
            partial = f"{self.path}.part"
            with open(partial, "wb") as handle:
                write(handle)
            os.replace(partial, self.path)
            return
        buffer = io.BytesIO()
        write(buffer)
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(buffer.getbuffer())

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file (`write_with`)."""
        self.write_with(lambda handle: handle.write(data))

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def remove(self) -> None:
        """Delete the file or the folder with everything in it; nothing when absent."""
        info = self._info()
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path)


def location(target: str | os.PathLike | Location) -> Location:
    """A Location for a path (made absolute) or a URI; a Location is returned as it is.

    Raises:
        StorageError: a URI no filesystem opens (unknown scheme, bad bucket, no credentials).
    """
    if isinstance(target, Location):
        return target
    text = os.fspath(target)
    if "://" not in text:
        return Location(pafs.LocalFileSystem(), str(Path(text).expanduser().resolve()))
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme
    try:
        fs, path = pafs.FileSystem.from_uri(_s3_uri(text, parts))
    except (OSError, ValueError) as native:
        if "Unrecognized filesystem type" not in str(native):
            raise StorageError(f"{text}: {native}") from None
    else:
        host = "" if path.lstrip("/").startswith(parts.netloc) else parts.netloc
        return Location(fs, path, (scheme, host, parts.query))
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    try:
        spec = fsspec.filesystem(scheme)
    except (ImportError, ValueError) as error:
        raise StorageError(f"{text}: no filesystem for {scheme}:// ({error})") from None
    path = spec._strip_protocol(text.split("://", 1)[1])
    return Location(PyFileSystem(FSSpecHandler(spec)), path, (scheme, "", ""))


_BUCKETS = ("s3", "gs", "gcs")  # object stores whose URI names a bucket that must exist
_SEEN_BUCKETS: set[tuple[str, str]] = set()


def _s3_uri(text: str, parts: urllib.parse.SplitResult) -> str:
    """An s3:// URI as ikd opens it: with the endpoint of an S3-compatible store (MinIO, Ceph,
    a test server) from the environment, as the AWS SDKs and CLI read it — `AWS_ENDPOINT_URL_S3`,
    else `AWS_ENDPOINT_URL` — unless the URI sets its own `endpoint_override` (pyarrow reads
    neither variable: apache/arrow#49643); and with `allow_delayed_open` unless the URI says
    otherwise: a small file is then written with one PUT, not a multipart upload's three
    requests (reads are unchanged: a HEAD, then a GET). An error then surfaces when the file is
    closed, not opened — `write_with` closes it before it returns — and a bucket that is not
    there is caught first (`check_store`). The location's text keeps the URI as given, so
    records name the bucket, not the endpoint this machine reached it at."""
    if parts.scheme != "s3":
        return text
    query = urllib.parse.parse_qsl(parts.query)
    if "allow_delayed_open" not in dict(query):
        query.append(("allow_delayed_open", "true"))
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_override" not in dict(query):
        url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        query += [("endpoint_override", url.netloc), ("scheme", url.scheme)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def check_store(target: str | os.PathLike | Location) -> None:
    """Raise a one-line StorageError unless an object store's URI (s3://, gs://) names a bucket
    that exists and answers; nothing for other locations. Checked once per process and bucket,
    where a command takes its roots: a missing bucket would otherwise surface as the first
    write's error deep inside a stage, an unreachable endpoint after seconds of retries."""
    found = location(target)
    if found._origin[0] not in _BUCKETS:
        return
    bucket = found.path.lstrip("/").split("/")[0]
    key = (found.fs.type_name, f"{found._origin[0]}://{bucket}?{found._origin[2]}")
    if key in _SEEN_BUCKETS:
        return
    try:
        info = found.fs.get_file_info(bucket)
    except OSError as error:
        detail = str(error).split("; Details:")[0]
        if any(word in detail for word in ("ACCESS_DENIED", "AccessDenied", "403", "Forbidden")):
            raise StorageError(f"{found}: access denied ({detail}); check the credentials "
                               "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the "
                               "bucket's policy") from None  # fmt: skip
        raise StorageError(f"{found}: the object store does not answer ({detail}); check the "
                           "endpoint (AWS_ENDPOINT_URL_S3, endpoint_override=), region and "
                           "credentials (AWS_*)") from None  # fmt: skip
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"{found}: no bucket {bucket!r} there (create it, or check the "
                           "name, the endpoint and the region)")  # fmt: skip
    _SEEN_BUCKETS.add(key)


def absolute(target: str | os.PathLike) -> str:
    """A path made absolute, a URI as it is (what a Ray job or a Tune trial is handed)."""
    return os.fspath(target) if "://" in os.fspath(target) else str(Path(target).resolve())


@contextlib.contextmanager
def staged(target: str | os.PathLike | Location, skip: Sequence[str] = ()) -> Iterator[Path]:
    """A local folder standing for `target`, for writers that take paths (pandas, matplotlib):
    the folder itself on a local disk; elsewhere a temporary copy of what it holds (its
    top-level entries named in `skip` left out, e.g. the runs under a results root), whose new
    and changed files are written back, each whole, when the block ends without an error."""
    target = location(target)
    if target.is_local:
        target.local.mkdir(parents=True, exist_ok=True)
        yield target.local
        return
    with tempfile.TemporaryDirectory(prefix="ikd-staged-") as temporary:
        folder, before = Path(temporary), {}
        kept = [entry for entry in target._entries() if posixpath.basename(entry.path) not in skip]
        remotes = [  # the skipped entries are never listed (a results root's runs: thousands)
            found
            for entry in kept
            for found in (
                Location(target.fs, entry.path, target._origin).files()
                if entry.type == pafs.FileType.Directory
                else [Location(target.fs, entry.path, target._origin)]
            )
        ]
        for remote in remotes:
            relative = remote.relative_to(target)
            before[relative] = remote.read_bytes()
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(before[relative])
        yield folder
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            data = path.read_bytes()
            if before.get(relative) != data:
                (target / relative).write_bytes(data)


def read_json(target: str | os.PathLike | Location, tries: int = 5) -> Any:
    """A JSON file's content, or None when it does not exist.

    pyarrow reads an object store's file as its size, then the bytes up to that size: a file
    rewritten between the two (a run's record as its run goes on, on another node) reads as the
    new content cut at the old length — seen on moto's S3 as a record cut mid-list. Such a read
    is not JSON, and is read again (`tries` times in all, 0.1 s apart, then the error stands);
    a local file is never seen half-written (module docstring), so its error stands at once."""
    where = location(target)
    for attempt in range(1, tries + 1):
        data = where.read_bytes_if_any()
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            if where.is_local or attempt == tries:
                raise
            time.sleep(0.1)


def write_json(target: str | os.PathLike | Location, content: Any) -> None:
    """Write JSON whole: a killed writer leaves no half file."""
    location(target).write_text(json.dumps(content, indent=2))


def sha256_file(target: str | os.PathLike | Location) -> str:
    """The first 16 hex digits of a file's SHA-256 (checkpoint provenance)."""
    target = location(target)
    digest = hashlib.sha256()
    with target.fs.open_input_file(target.path) as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def portable(value: Any, roots: Mapping[str, str | os.PathLike]) -> Any:
    """A record's text with every absolute local path inside one of `roots` (marker → folder,
    e.g. ``{"<results>": "/home/me/ikd/results/laptop"}``) written relative to it, the deepest
    root winning: ``/home/me/ikd/results/laptop/runs`` → ``<results>/runs``. A command line is
    rewritten token by token (``data.root=/home/me/ikd/datasets`` → ``data.root=<repo>/datasets``);
    URIs, relative paths, paths outside the roots and non-strings are returned as they are.
    `local` reverses it on another machine."""
    if not isinstance(value, str):
        return value
    folders = {marker: Path(root).resolve() for marker, root in roots.items() if root}
    return " ".join(_portable_token(token, folders) for token in value.split(" "))


def _portable_token(token: str, roots: Mapping[str, Path]) -> str:
    key, equals, path = token.rpartition("=")
    if not path.startswith("/"):
        return token
    real = Path(os.path.realpath(path))  # as the roots are: through any symlink
    inside = [(marker, root) for marker, root in roots.items() if real.is_relative_to(root)]
    if not inside:
        return token
    marker, root = max(inside, key=lambda item: len(item[1].parts))
    relative = real.relative_to(root).as_posix()
    return f"{key}{equals}{marker}" + ("" if relative == "." else f"/{relative}")


def local(value: Any, roots: Mapping[str, str | os.PathLike]) -> Any:
    """`portable` reversed: each token starting with a marker (after ``key=`` too) resolved
    against this machine's folder for it; anything else, an old record's absolute path included,
    is returned as it is."""
    if not isinstance(value, str):
        return value
    tokens = []
    for token in value.split(" "):
        key, equals, path = token.rpartition("=")
        for marker, root in roots.items():
            if root and (path == marker or path.startswith(f"{marker}/")):
                path = os.fspath(root) + path[len(marker) :]
                break
        tokens.append(f"{key}{equals}{path}")
    return " ".join(tokens)
