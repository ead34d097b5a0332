"""The Ray Data pipeline: captures → gait windows + faces → teacher outputs → Parquet.

The only data module that imports Ray (DESIGN.md §7). Stages, each idempotent and skipped once
its marker exists, so an interrupted build resumes at the first unfinished stage and a finished
build is a no-op (the folder is keyed by the config's data hash):

1. **pairs** (Ray Data tasks): walks — synthetic ones simulated in-stream with the fast path,
   real ones read from `.bin` — → gait windows (`radar/`) → the face frame at each window's
   centre (data/pairs.py: rendered, or MTCNN on webcam frames in actors) → `pairs/*.parquet`,
   one row per window, failed records kept as error rows.
2. **teacher**: the VGGFace2 backbone when its weights are cached, else InceptionResnetV1
   trained on the training split's faces; then the linear classifier (face/teacher.py).
3. **views** (Ray Data actors, the teacher loaded once each, data/views.py): the frozen
   teacher's embedding and logits for K views of every good face → `data/*.parquet`.

Then `manifest.json`: config and its hash, teacher provenance, shapes, counts per identity and
split, every dropped record and why, and per-stage wall times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import ray
from ray.data.context import ShuffleStrategy
from ray.data.expressions import col

from ikd.cluster import cluster_cpus, init_ray
from ikd.config import CONFIG, Config
from ikd.data import schema
from ikd.data.dataset import (
    COMPLETE,
    DATA,
    DONE,
    MANIFEST,
    PAIRS,
    TEACHER,
    TIMINGS,
    BuiltDataset,
    check_split_access,
    dataset_folder,
    finished_manifest,
    parquet,
)
from ikd.data.pairs import RealFaces, synthetic_pairs_batch
from ikd.data.splits import assign_splits
from ikd.data.views import TeacherViews
from ikd.errors import UserError
from ikd.face.teacher import prepare_teacher, read_teacher_info
from ikd.radar.captures import capture_rows, capture_windows_batch, read_metadata
from ikd.storage import Location, read_json, write_json

log = logging.getLogger(__name__)


class _Quiet(logging.Filter):
    """Drops two of Ray Data's warnings in the dataset stages (`data_context` says why)."""

    LOGGERS = ("ray.data.dataset", "ray.data._internal.progress")
    DROPPED = ("does not have any available CPUs", "Progress bars disabled")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.DROPPED)


def _warn_without_free_cpus(settle_s: float = 2.0) -> None:
    """Warn when the cluster has not one whole CPU free for the dataset stages (another job's
    tasks, actors or Tune trials hold them, or it has none yet, an autoscaler's workers still to
    come): their 1-CPU tasks wait until one is. The resource view lags by about a second, so
    only a shortage that lasts `settle_s` counts."""
    deadline = time.monotonic() + settle_s
    while ray.available_resources().get("CPU", 0) < 1:
        if time.monotonic() > deadline:
            total = ray.cluster_resources().get("CPU", 0)
            held = f"all {total:g} held by other work" if total else "it has none yet"
            log.warning(
                "the Ray cluster has no free CPU (%s): the dataset stages wait until one is", held
            )
            return
        time.sleep(0.25)


@contextlib.contextmanager
def data_context(progress: bool = True) -> Iterator[None]:
    """Ray Data settings of the dataset stages, restored afterwards (Ray Train feeding wants its own).

    Ray Data reserves half of the CPUs per operator by default; on a 2-CPU machine that ran the
    simulate + DSP stage one task at a time (1.1× speed-up from 1 to 2 CPUs; 1.7× without it,
    benchmarks/README.md). Our stages are single map operators, so the reservation buys nothing.

    Quiet: Ray Data's bars only on a terminal (elsewhere it logs every operator's progress every
    few seconds; nor its warning that they are off, with how to turn them on), and its INFO
    lines (execution plans, "execution finished", sink summaries) hidden — ikd logs each stage
    and what it wrote. Also without its high-memory notices: they fire when a task's memory
    (~0.5 GiB for the Parquet writes at the laptop preset, most of it the worker's own imports)
    exceeds what its CPU share "safely" gets — always for the 0.1-CPU writes, which are small so
    they run beside the compute — and recommend a `memory=` request that would only hold the
    writes back (six notices per laptop build, none a risk). And
    without its "no available CPUs … will hang" warning, which reads the cluster's resource view
    as an execution starts: right after the stages' own short tasks (a read's footer sampling, a
    `materialize`) that view still counts them for ~1 s, so it warned of a hang that never came
    in every build. Ray warns once per process, so a drop also spends that one warning: whether
    the cluster has a CPU free for the stages is checked here instead, once as they begin and
    after the view has settled (`_warn_without_free_cpus`).
    """
    _warn_without_free_cpus()
    context = ray.data.DataContext.get_current()
    detectors = context.issue_detectors_config
    data_log = logging.getLogger("ray.data")
    saved = (
        context.op_resource_reservation_enabled,
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        detectors.detectors,
        data_log.level,
    )
    context.op_resource_reservation_enabled = False
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress and sys.stderr.isatty()
    detectors.detectors = [d for d in saved[3] if d.__name__ != "HighMemoryIssueDetector"]
    data_log.setLevel(logging.WARNING)
    quiet = _Quiet()
    for name in quiet.LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    finally:
        for name in quiet.LOGGERS:
            logging.getLogger(name).removeFilter(quiet)
        (
            context.op_resource_reservation_enabled,
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            detectors.detectors,
            level,
        ) = saved
        data_log.setLevel(level)


def walk_rows(
    config: Config,
) -> tuple[dict[str, np.ndarray], dict[tuple[int, int], dict[str, Any]]]:
    """One row per walk with its split; for real captures also the paths and face-frame info."""
    if not config.data.captures:
        synthetic = config.synthetic
        pairs = [
            (i, w)
            for i in range(synthetic.num_identities)
            for w in range(synthetic.walks_per_identity)
        ]
        splits = assign_splits(pairs, config.data)
        rows = {
            schema.IDENTITY: np.array([i for i, _ in pairs]),
            schema.WALK: np.array([w for _, w in pairs]),
            schema.SPLIT: np.array([splits[p] for p in pairs], dtype=object),
        }
        return rows, {}
    folder = Path(config.data.captures)
    radar, captures = read_metadata(folder)
    if radar != config.radar:
        differ = [
            f"radar.{k}={v!r}"
            for k, v in dataclasses.asdict(radar).items()
            if getattr(config.radar, k) != v
        ]
        raise UserError(
            f"{folder}: its radar differs from the config's; add the overrides {' '.join(differ)}"
        )
    seen = {(c["identity"], c["walk"]) for c in captures}
    if len(seen) < len(captures) or any(walk >= 1000 for _, walk in seen):
        raise UserError(f"{folder}: each (identity, walk) must appear once, with walk < 1000")
    identities = sorted({c["identity"] for c in captures})
    if identities != list(range(len(identities))):
        raise UserError(
            f"{folder}: identities must be numbered 0 … N−1 (classifier classes); found {identities[:10]}…"
        )
    splits = assign_splits([(c["identity"], c["walk"]) for c in captures], config.data)
    rows = capture_rows(folder, captures)
    rows[schema.SPLIT] = np.array(
        [splits[c["identity"], c["walk"]] for c in captures], dtype=object
    )
    frames = {
        (c["identity"], c["walk"]): {
            "folder": str(folder / c["frames"]),
            "frame_rate_hz": float(c.get("frame_rate_hz", config.face.frame_rate_hz)),
            "frame_offset_s": float(c.get("frame_offset_s", 0.0)),
        }
        for c in captures
        if "frames" in c
    }
    return rows, frames


def build_dataset(config: Config, *, progress: bool = True, stop_after: str = "views") -> Location:
    """Build (or resume, or confirm) the config's dataset; return its folder.

    Each stage writes a marker naming what it was built from (the data hash; for the views, the
    teacher's checkpoint hashes), and a stage whose inputs changed is rebuilt.

    Args:
        stop_after: "teacher" (pairs and teacher only, as `ikd teacher train`) or "views" (all).

    Raises:
        UserError: every record failed, or the teacher cannot be resolved.
    """
    folder = dataset_folder(config)
    if finished_manifest(folder) is not None:
        log.info("dataset %s is up to date (data hash %s)", folder, config.data_hash())
        return folder
    rows, frames = walk_rows(config)  # a capture folder that cannot be read leaves no folder
    write_json(folder / CONFIG, config.to_dict())
    init_ray()
    timings = read_json(folder / TIMINGS) or {}
    with data_context(progress):
        pairs_marker = {"data_hash": config.data_hash()}
        if read_json(folder / PAIRS / DONE) != pairs_marker:
            start = time.perf_counter()
            (folder / TEACHER).remove()  # built from the old pairs
            _build_pairs(config, rows, frames, folder / PAIRS)
            timings["pairs (simulate/read + DSP + faces)"] = round(time.perf_counter() - start, 1)
            write_json(folder / PAIRS / DONE, pairs_marker)
            write_json(folder / TIMINGS, timings)
        counts = _pair_counts(folder / PAIRS)
        if not sum(counts.values()):
            first = _dropped(folder / PAIRS)[:1]
            raise UserError(
                f"every record failed; first: {first[0]['error'] if first else 'no walks'}"
            )
        num_identities = int(rows[schema.IDENTITY].max()) + 1

        if read_teacher_info(folder / TEACHER) is None:
            start = time.perf_counter()
            faces = {split: _faces(folder / PAIRS, split, config) for split in ("train", "val")}
            for split, (images, labels) in faces.items():
                missing = sorted(set(range(num_identities)) - set(labels.tolist()))
                if len(images) < 2 or (split == "train" and missing):
                    raise UserError(
                        f"the {split} split holds {len(images)} faces (no face for identities {missing[:10]}); "
                        "the teacher needs faces of every identity to train on and some to validate on"
                    )
            prepare_teacher(folder / TEACHER, faces, num_identities, config, progress=progress)
            timings["teacher (train backbone + classifier)"] = round(time.perf_counter() - start, 1)
            write_json(folder / TIMINGS, timings)
        teacher = read_teacher_info(folder / TEACHER)
        if stop_after == "teacher":
            return folder

        shapes = schema.Shapes(
            config.dsp.image_size, config.face.image_size, config.face.views, num_identities
        )
        views_marker = {
            "backbone_sha256": teacher.backbone_sha256,
            "classifier_sha256": teacher.classifier_sha256,
            **pairs_marker,
        }
        if read_json(folder / DATA / DONE) != views_marker:
            start = time.perf_counter()
            _build_views(folder, shapes, sum(counts.values()))
            timings["views (teacher embeddings)"] = round(time.perf_counter() - start, 1)
            write_json(folder / DATA / DONE, views_marker)
            write_json(folder / TIMINGS, timings)

    manifest = _manifest(config, folder, shapes, teacher, timings)
    write_json(folder / MANIFEST, manifest)
    log.info(
        "dataset %s: %d pairs, %d dropped",
        folder,
        manifest["counts"]["total"],
        len(manifest["dropped"]),
    )
    for split, missing in manifest["identities_without_pairs"].items():
        if missing:
            log.warning("%s split has no pairs of identities %s", split, missing)
    return folder


def read_parquet(path: str, filesystem: Any, **options: Any) -> ray.data.Dataset:
    """`ray.data.read_parquet` with Ray Data's first Parquet datasource: it lists the files and
    samples a few footers when the read is made (in this process and a few 1-CPU tasks), then
    its read tasks read them.

    Ray 2.60's default (its second datasource) lists a read's files through a pool of 32
    `FooterReader` actors, each a process once it is placed — one or two at a time on 2 CPUs,
    killed when the listing ends: the laptop train split's read took 3.0 s that way against
    0.9 s this way, the val split's 2.0 against 0.6 s (benchmarks/README.md, "Parquet reads").
    The rows are the same; the choice is made when the read is (the dataset keeps it).
    """
    context = ray.data.DataContext.get_current()
    saved, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        return ray.data.read_parquet(path, filesystem=filesystem, **options)
    finally:
        context.use_datasource_v2 = saved


def _build_views(folder: Location, shapes: schema.Shapes, rows: int) -> None:
    """Stage 3: teacher outputs for K views of every good face (Ray Data actors).

    Four blocks per CPU, but none under a batch, and an actor per four blocks: the teacher
    runs on whole chunks (`TeacherViews.CHUNK`, the last one padded) and an actor's start costs
    ~4 CPU-seconds (torch, torchvision, the teacher), so a small build (a smoke run's 46 rows)
    runs one actor on 3 chunks instead of two on 8 mostly padded ones — the same outputs, which
    do not depend on the blocks.
    """
    (folder / DATA).remove()
    batch = 32
    blocks = max(1, min(4 * cluster_cpus(), rows // batch))
    (
        read_parquet((folder / PAIRS).path, folder.fs)
        .filter(expr=col(schema.ERROR) == "")
        .drop_columns([schema.ERROR])
        .repartition(blocks)
        .materialize()
        # Actors take 0.9 CPU each so the Parquet writes (0.1) still run beside them on 2 cores.
        .map_batches(
            TeacherViews,
            fn_constructor_args=(str(folder / TEACHER), shapes),  # a path or a URI
            batch_size=batch,
            # one actor to start with, more while blocks wait
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, blocks // 4)),
            num_cpus=0.9,
            batch_format="numpy",
        )
        .write_parquet(
            (folder / DATA).path, filesystem=folder.fs, ray_remote_args={"num_cpus": 0.1}
        )
    )


def read_split(
    dataset: BuiltDataset,
    split: str,
    *,
    decode: bool = True,
    final_run: Mapping[str, Any] | None = None,
) -> ray.data.Dataset:
    """The Ray Data reader of one split: the same decoded samples as `PairedDataset`
    (ikd/train/data.py), ordered by key; or, with `decode=False`, the stored columns
    (`schema.SAMPLE_COLUMNS`) in any order — what Ray Train workers read (train/data.py sorts and
    decodes them compactly). The test split needs a final run's record
    (`dataset.check_split_access`).

    Read tasks ask for a quarter CPU: beside training workers that hold most CPUs they still run
    (DESIGN.md §7: Ray Data feeding Train on 2 CPUs deadlocks otherwise).
    """
    check_split_access(split, final_run)
    columns = list(schema.SAMPLE_COLUMNS)
    # A Ray dataset keeps the DataContext its read was made in. Ray's default shuffle
    # (SHUFFLE_V2) sorts into 200 partitions, so the decode after it ran 200 tasks however small
    # the split (6.4 s for the smoke preset's 8 val rows); the pull-based sort keeps one output
    # block per input block, as the read makes them (1.0 s). Order is preserved after the sort.
    context = ray.data.DataContext.get_current()
    saved = context.shuffle_strategy, context.execution_options.preserve_order
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    context.execution_options.preserve_order = True
    try:
        rows = read_parquet(
            (dataset.folder / DATA).path,
            dataset.folder.fs,
            columns=[*columns, schema.SPLIT],
            num_cpus=0.25,
        ).filter(expr=col(schema.SPLIT) == split)
        if not decode:
            return rows.select_columns(columns)
        return rows.sort(schema.KEY).map_batches(
            schema.decode_batch, fn_kwargs={"shapes": dataset.shapes}, batch_format="numpy"
        )
    finally:
        context.shuffle_strategy, context.execution_options.preserve_order = saved


def _build_pairs(config: Config, rows: dict[str, np.ndarray], frames: dict, out: Location) -> None:
    out.remove()
    items = [{k: v[i] for k, v in rows.items()} for i in range(len(rows[schema.IDENTITY]))]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * cluster_cpus()))
    if config.data.captures:
        # CPUs: reading tasks 0.8, detector actors 0.5 each (up to one per CPU and per 32
        # captures of a few windows each: an actor's start costs ~4 CPU-seconds, a window's
        # face ~0.03), storage and writes 0.1 — every stage can always be scheduled, so the
        # stream cannot deadlock.
        dataset = dataset.map_batches(
            capture_windows_batch,
            fn_kwargs={"config": config},
            batch_size=1,
            batch_format="numpy",
            num_cpus=0.8,
        )
        dataset = dataset.map_batches(
            RealFaces,
            fn_constructor_args=(config, frames),
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=max(1, min(cluster_cpus(), len(items) // 32))
            ),
            num_cpus=0.5,
            batch_size=16,
            batch_format="numpy",
        )
    else:
        dataset = dataset.map_batches(
            synthetic_pairs_batch, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy"
        )
    splits = {
        (int(i), int(w)): s
        for i, w, s in zip(
            rows[schema.IDENTITY], rows[schema.WALK], rows[schema.SPLIT], strict=True
        )
    }
    dataset.map_batches(
        schema.to_storage, fn_kwargs={"splits": splits}, batch_format="numpy", num_cpus=0.1
    ).write_parquet(out.path, filesystem=out.fs, ray_remote_args={"num_cpus": 0.1})


def _pair_counts(pairs: Location) -> dict[str, int]:
    """Good pairs per split."""
    table = parquet(pairs).to_table(columns=[schema.SPLIT], filter=pads.field(schema.ERROR) == "")
    splits = table.column(schema.SPLIT).to_numpy(zero_copy_only=False)
    return {name: int((splits == name).sum()) for name in schema.SPLITS}


def _faces(pairs: Location, split: str, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """One split's good faces (train or val only: the teacher never sees test)."""
    if split == "test":
        raise ValueError("the teacher never reads test faces")
    table = parquet(pairs).to_table(
        columns=[schema.KEY, schema.IDENTITY, schema.FACE],
        filter=(pads.field(schema.ERROR) == "") & (pads.field(schema.SPLIT) == split),
    )
    # In key order, whatever order Ray Data wrote the files in: the teacher's training order
    # (and so its weights) then depends on the pairs alone.
    table = table.sort_by(schema.KEY)
    size = config.face.image_size
    faces = (
        np.frombuffer(b"".join(table.column(schema.FACE).to_pylist()), np.uint8)
        .reshape(-1, 3, size, size)
        .copy()
    )
    return faces, table.column(schema.IDENTITY).to_numpy().astype(np.int64)


def _dropped(pairs: Location) -> list[dict[str, Any]]:
    table = parquet(pairs).to_table(
        columns=[schema.IDENTITY, schema.WALK, schema.WINDOW, schema.ERROR],
        filter=pads.field(schema.ERROR) != "",
    )
    return sorted(
        table.to_pylist(), key=lambda r: (r[schema.IDENTITY], r[schema.WALK], r[schema.WINDOW])
    )


def _manifest(
    config: Config, folder: Location, shapes: schema.Shapes, teacher: Any, timings: dict[str, float]
) -> dict[str, Any]:
    table = parquet(folder / DATA).to_table(columns=[schema.IDENTITY, schema.WALK, schema.SPLIT])
    identity = table.column(schema.IDENTITY).to_numpy()
    split = table.column(schema.SPLIT).to_numpy(zero_copy_only=False)
    walk = table.column(schema.WALK).to_numpy()
    counts: dict[str, Any] = {
        "total": len(identity),
        "per_split": {},
        "per_identity": {},
        "walks_per_split": {},
    }
    for name in schema.SPLITS:
        chosen = split == name
        counts["per_split"][name] = int(chosen.sum())
        counts["walks_per_split"][name] = len(set(zip(identity[chosen], walk[chosen], strict=True)))
    for person in range(shapes.num_identities):
        counts["per_identity"][str(person)] = {
            name: int(((identity == person) & (split == name)).sum()) for name in schema.SPLITS
        }
    size = folder.size()
    return {
        "status": COMPLETE,
        "preset": config.preset,
        "synthetic": not config.data.captures,
        "data_hash": config.data_hash(),
        "config": config.to_dict(),
        "shapes": shapes.__dict__,
        "teacher": teacher.__dict__,
        "counts": counts,
        "identities_without_pairs": {
            name: [
                int(p)
                for p in range(shapes.num_identities)
                if counts["per_identity"][str(p)][name] == 0
            ]
            for name in schema.SPLITS
        },
        "dropped": _dropped(folder / PAIRS),
        "seconds": timings,
        "bytes_on_disk": size,
    }
