"""A built dataset on disk, without Ray: its folder, manifest, and a plain torch `Dataset`.

Layout of ``<data.root>/<preset>-<data hash>/``:

    manifest.json   config, teacher provenance, counts per identity and split, dropped records
    pairs/          stage 1: every gait window with its face (and error rows), Parquet
    teacher/        stage 2: teacher.json, classifier.pt (and backbone.pt when trained here)
    data/           stage 3: good pairs with the teacher's outputs for K views, Parquet
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import torch
from torch.utils.data import Dataset

from ikd.config import Config
from ikd.data import schema
from ikd.errors import UserError

MANIFEST = "manifest.json"
PAIRS, TEACHER, DATA = "pairs", "teacher", "data"
DONE = "_DONE.json"
TIMINGS = "timings.json"


def dataset_folder(config: Config) -> Path:
    """Where the config's dataset lives: <data.root>/<preset>-<data hash> (absolute)."""
    return (Path(config.data.root) / f"{config.preset}-{config.data_hash()}").resolve()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any] | None:
    return read_json(Path(folder) / MANIFEST)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or None when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: str | os.PathLike, content: Any) -> None:
    """Write JSON atomically (a temporary file, then a rename): a killed build leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


def shapes_of(manifest: dict[str, Any]) -> schema.Shapes:
    return schema.Shapes(**manifest["shapes"])


def decode_batch(batch: dict[str, Any], shapes: schema.Shapes) -> dict[str, np.ndarray]:
    """Stored columns → training arrays: spectrogram (B, 3, H, H) float32, teacher_embedding
    (B, K, 512), teacher_logits (B, K, N) float32, identity / walk / window / key (B,) int64."""
    return {
        schema.SPECTROGRAM: shapes.decode_spectrogram(list(batch[schema.SPECTROGRAM])),
        schema.TEACHER_EMBEDDING: shapes.decode_embedding(list(batch[schema.TEACHER_EMBEDDING])),
        schema.TEACHER_LOGITS: shapes.decode_logits(list(batch[schema.TEACHER_LOGITS])),
        **{
            name: np.asarray(batch[name], np.int64)
            for name in (schema.IDENTITY, schema.WALK, schema.WINDOW, schema.KEY)
        },
    }


def read_split_table(
    folder: str | os.PathLike, split: str, columns: list[str] | None = None, stage: str = DATA
) -> dict[str, np.ndarray]:
    """One split's good rows of a stage (`data`, or `pairs` for the faces) as numpy columns,
    sorted by key."""
    if split not in schema.SPLITS:
        raise UserError(f"unknown split {split!r}; choose from {schema.SPLITS}")
    where = pads.field(schema.SPLIT) == split
    if stage == PAIRS:
        where = where & (pads.field(schema.ERROR) == "")
    table = pads.dataset(Path(folder) / stage, format="parquet").to_table(
        columns=columns, filter=where
    )
    table = table.sort_by(schema.KEY) if schema.KEY in table.column_names else table
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


class PairedDataset(Dataset):
    """The plain torch view of one split (tests, debugging): sample i is the i-th key in order."""

    def __init__(self, folder: str | os.PathLike, split: str) -> None:
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        if manifest is None or manifest.get("status") != "complete":
            raise UserError(f"{self.folder}: not a finished dataset (run `ikd data build`)")
        self.shapes = shapes_of(manifest)
        self.columns = read_split_table(self.folder, split, list(schema.SAMPLE_COLUMNS))

    def __len__(self) -> int:
        return len(self.columns[schema.KEY])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = {name: values[index : index + 1] for name, values in self.columns.items()}
        return {
            name: torch.as_tensor(value[0])
            for name, value in decode_batch(row, self.shapes).items()
        }
