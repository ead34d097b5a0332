"""The Ray Data pipeline: captures → gait windows + faces → teacher outputs → Parquet.

The only data module that imports Ray (DESIGN.md §7). Stages, each idempotent and skipped once
its marker exists, so an interrupted build resumes at the first unfinished stage and a finished
build is a no-op (the folder is keyed by the config's data hash):

1. **pairs** (Ray Data tasks): walks — synthetic ones simulated in-stream with the fast path,
   real ones read from `.bin` — → gait windows (`radar/`) → the face frame at each window's
   centre (`face/`: rendered, or MTCNN on webcam frames in actors) → `pairs/*.parquet`, one row
   per window, failed records kept as error rows.
2. **teacher**: the VGGFace2 backbone when its weights are cached, else InceptionResnetV1
   trained on the training split's faces; then the linear classifier (models/teacher.py).
3. **views** (Ray Data actors, the teacher loaded once each): the frozen teacher's embedding and
   logits for K views of every good face → `data/*.parquet`.

Then `manifest.json`: config and its hash, teacher provenance, shapes, counts per identity and
split, every dropped record and why, and per-stage wall times.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import ray
from ray.data.expressions import col

from ikd.config import Config
from ikd.data import schema
from ikd.data.dataset import (
    DATA,
    DONE,
    MANIFEST,
    PAIRS,
    TEACHER,
    dataset_folder,
    decode_batch,
    read_manifest,
    shapes_of,
)
from ikd.data.splits import assign_splits
from ikd.errors import UserError
from ikd.face.pairs import RealFaces, synthetic_faces_batch
from ikd.models.teacher import TeacherViews, prepare_teacher, read_teacher_info
from ikd.radar.captures import (
    capture_rows,
    capture_windows_batch,
    read_metadata,
    walk_windows_batch,
)

log = logging.getLogger(__name__)


def init_ray(num_cpus: int | None = None) -> None:
    """Start a local Ray, or join the cluster named by RAY_ADDRESS (whose size is its own)."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and num_cpus is not None:
        raise UserError("RAY_ADDRESS is set: the cluster decides the CPUs; drop --num-cpus")
    ray.init(
        address=address,
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        configure_logging=False,
    )
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    # Ray Data reserves half of the CPUs per operator by default; on a 2-CPU machine that ran the
    # simulate + DSP stage one task at a time (1.1× speed-up from 1 to 2 CPUs; 2× without it;
    # benchmarks/README.md). Our stages are single map operators, so the reservation buys nothing.
    context.op_resource_reservation_enabled = False


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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
    _, captures = read_metadata(folder)
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


def build_dataset(config: Config, *, progress: bool = True, stop_after: str = "views") -> Path:
    """Build (or resume, or confirm) the config's dataset; return its folder.

    Args:
        stop_after: "teacher" (pairs and teacher only, as `ikd teacher train`) or "views" (all).

    Raises:
        UserError: every record failed, or the teacher cannot be resolved.
    """
    folder = dataset_folder(config)
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("status") == "complete":
        log.info("dataset %s is up to date (data hash %s)", folder, config.data_hash())
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    init_ray()
    ray.data.DataContext.get_current().enable_progress_bars = progress
    rows, frames = walk_rows(config)
    timings = _load_timings(folder)

    if not (folder / PAIRS / DONE).exists():
        start = time.perf_counter()
        _build_pairs(config, rows, frames, folder / PAIRS)
        timings["pairs (simulate/read + DSP + faces)"] = round(time.perf_counter() - start, 1)
        (folder / PAIRS / DONE).write_text(
            json.dumps({"seconds": timings["pairs (simulate/read + DSP + faces)"]})
        )
        _save_timings(folder, timings)
    good = _good_pairs(folder / PAIRS)
    if not len(good[schema.KEY]):
        first = _dropped(folder / PAIRS)[:1]
        raise UserError(f"every record failed; first: {first[0]['error'] if first else 'no walks'}")
    num_identities = int(rows[schema.IDENTITY].max()) + 1

    if read_teacher_info(folder / TEACHER) is None:
        start = time.perf_counter()
        faces = {split: _faces(good, split, config) for split in ("train", "val")}
        for split, (images, labels) in faces.items():
            missing = sorted(set(range(num_identities)) - set(labels.tolist()))
            if len(images) < 2 or (split == "train" and missing):
                raise UserError(
                    f"the {split} split holds {len(images)} faces (no face for identities {missing[:10]}); "
                    "the teacher needs faces of every identity to train on and some to validate on"
                )
        prepare_teacher(folder / TEACHER, faces, num_identities, config, progress=progress)
        timings["teacher (train backbone + classifier)"] = round(time.perf_counter() - start, 1)
        _save_timings(folder, timings)
    teacher = read_teacher_info(folder / TEACHER)
    if stop_after == "teacher":
        return folder

    shapes = schema.Shapes(
        config.dsp.image_size, config.face.image_size, config.face.views, num_identities
    )
    if not (folder / DATA / DONE).exists():
        start = time.perf_counter()
        shutil.rmtree(folder / DATA, ignore_errors=True)
        cpus = cluster_cpus()
        (
            ray.data.read_parquet(str(folder / PAIRS))
            .filter(expr=col(schema.ERROR) == "")
            .repartition(4 * cpus)
            .materialize()  # in the object store, so the actors can take every CPU
            .map_batches(
                TeacherViews,
                fn_constructor_args=(str(folder / TEACHER), shapes),
                batch_size=32,
                concurrency=cpus,
                num_cpus=1,
                batch_format="numpy",
            )
            .write_parquet(str(folder / DATA))
        )
        timings["views (teacher embeddings)"] = round(time.perf_counter() - start, 1)
        (folder / DATA / DONE).write_text(
            json.dumps({"seconds": timings["views (teacher embeddings)"]})
        )

    manifest = _manifest(config, folder, shapes, teacher, timings)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log.info(
        "dataset %s: %d pairs, %d dropped",
        folder,
        manifest["counts"]["total"],
        len(manifest["dropped"]),
    )
    return folder


def read_split(folder: str | os.PathLike, split: str) -> ray.data.Dataset:
    """The Ray Data reader of one split (for Ray Train): the same decoded samples as
    `PairedDataset`, ordered by key."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("status") != "complete":
        raise UserError(f"{folder}: not a finished dataset (run `ikd data build`)")
    shapes = shapes_of(manifest)
    columns = [
        schema.KEY,
        schema.IDENTITY,
        schema.WALK,
        schema.WINDOW,
        schema.SPECTROGRAM,
        schema.TEACHER_EMBEDDING,
        schema.TEACHER_LOGITS,
    ]
    dataset = ray.data.read_parquet(str(folder / DATA), columns=[*columns, schema.SPLIT]).filter(
        expr=col(schema.SPLIT) == split
    )
    return dataset.sort(schema.KEY).map_batches(
        decode_batch, fn_kwargs={"shapes": shapes}, batch_format="numpy"
    )


def _build_pairs(config: Config, rows: dict[str, np.ndarray], frames: dict, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    items = [{k: v[i] for k, v in rows.items()} for i in range(len(rows[schema.IDENTITY]))]
    dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * cluster_cpus()))
    if config.data.captures:
        dataset = dataset.map_batches(
            capture_windows_batch, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy"
        )
        dataset = dataset.map_batches(
            RealFaces,
            fn_constructor_args=(config, frames),
            concurrency=cluster_cpus(),
            num_cpus=1,
            batch_size=16,
            batch_format="numpy",
        )
    else:
        dataset = dataset.map_batches(
            _synthetic_pairs, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy"
        )
    splits = {
        (int(i), int(w)): s
        for i, w, s in zip(
            rows[schema.IDENTITY], rows[schema.WALK], rows[schema.SPLIT], strict=True
        )
    }
    dataset.map_batches(
        _to_storage, fn_kwargs={"splits": splits}, batch_format="numpy"
    ).write_parquet(str(out))


def _synthetic_pairs(batch: dict[str, np.ndarray], *, config: Config) -> dict[str, np.ndarray]:
    """Simulate + DSP + faces in one task: no intermediate copy of the gait images."""
    return synthetic_faces_batch(walk_windows_batch(batch, config=config), config=config)


def _to_storage(
    batch: dict[str, np.ndarray], *, splits: dict[tuple[int, int], str]
) -> dict[str, np.ndarray]:
    """Windows with faces → stored columns (schema.py)."""
    identity, walk, window = batch[schema.IDENTITY], batch[schema.WALK], batch[schema.WINDOW]
    return {
        schema.KEY: schema.row_key(identity, walk, window),
        schema.IDENTITY: identity,
        schema.WALK: walk,
        schema.WINDOW: window,
        schema.SPLIT: np.array(
            [splits[int(i), int(w)] for i, w in zip(identity, walk, strict=True)], dtype=object
        ),
        schema.CENTRE_TIME: batch[schema.CENTRE_TIME],
        schema.SPECTROGRAM: schema.encode_spectrogram(batch[schema.SPECTROGRAM]),
        schema.FACE: schema.encode(batch[schema.FACE]),
        schema.ERROR: batch[schema.ERROR].astype(str).astype(object),
    }


def _good_pairs(pairs: Path) -> dict[str, np.ndarray]:
    table = pads.dataset(pairs, format="parquet").to_table(
        columns=[schema.KEY, schema.IDENTITY, schema.SPLIT, schema.FACE],
        filter=pads.field(schema.ERROR) == "",
    )
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _faces(
    good: dict[str, np.ndarray], split: str, config: Config
) -> tuple[np.ndarray, np.ndarray]:
    chosen = good[schema.SPLIT] == split
    size = config.face.image_size
    faces = (
        np.frombuffer(b"".join(good[schema.FACE][chosen]), np.uint8)
        .reshape(-1, 3, size, size)
        .copy()
    )
    return faces, good[schema.IDENTITY][chosen].astype(np.int64)


def _dropped(pairs: Path) -> list[dict[str, Any]]:
    table = pads.dataset(pairs, format="parquet").to_table(
        columns=[schema.IDENTITY, schema.WALK, schema.WINDOW, schema.ERROR],
        filter=pads.field(schema.ERROR) != "",
    )
    return sorted(
        table.to_pylist(), key=lambda r: (r[schema.IDENTITY], r[schema.WALK], r[schema.WINDOW])
    )


def _manifest(
    config: Config, folder: Path, shapes: schema.Shapes, teacher: Any, timings: dict[str, float]
) -> dict[str, Any]:
    table = pads.dataset(folder / DATA, format="parquet").to_table(
        columns=[schema.IDENTITY, schema.WALK, schema.SPLIT]
    )
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
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {
        "status": "complete",
        "preset": config.preset,
        "synthetic": not config.data.captures,
        "config_hash": config.hash(),
        "data_hash": config.data_hash(),
        "config": config.to_dict(),
        "shapes": shapes.__dict__,
        "teacher": teacher.__dict__,
        "counts": counts,
        "dropped": _dropped(folder / PAIRS),
        "seconds": timings,
        "bytes_on_disk": size,
    }


def _load_timings(folder: Path) -> dict[str, float]:
    path = folder / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_timings(folder: Path, timings: dict[str, float]) -> None:
    (folder / "timings.json").write_text(json.dumps(timings, indent=2))
