"""A built dataset on disk, without Ray or torch: the handle every reader opens it through.

`open_dataset(folder, config)` checks once that the folder holds a finished dataset built with the
config's data settings and returns a `BuiltDataset` (folder, manifest, shapes); the training
readers, the run driver, the report and the CLI take that handle instead of a folder.

Layout of ``<data.root>/<preset>-<data hash>/``:

    manifest.json   config, teacher provenance, counts per identity and split, dropped records
    pairs/          stage 1: every gait window with its face (and error rows), Parquet
    teacher/        stage 2: teacher.json, classifier.pt (and backbone.pt when trained here)
    data/           stage 3: good pairs with the teacher's outputs for K views, Parquet
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow.dataset as pads

from ikd.config import DATA_SECTIONS, Config
from ikd.data import schema
from ikd.errors import UserError
from ikd.storage import Location, location, read_json

MANIFEST = "manifest.json"
PAIRS, TEACHER, DATA = "pairs", "teacher", "data"
DONE = "_DONE.json"
TIMINGS = "timings.json"
REPORT, SAMPLES = "report.md", "samples.png"
COMPLETE = "complete"  # the manifest's status once every stage is done
STORAGE_READ_BYTES = 4 << 30  # resources.data=auto: larger datasets are read where they are used


def dataset_folder(config: Config) -> Location:
    """Where the config's dataset lives: <data.root>/<preset>-<data hash> (absolute, or in the
    storage a URI names: `ikd.storage`)."""
    return location(config.data.root) / f"{config.preset}-{config.data_hash()}"


def finished_manifest(folder: str | os.PathLike | Location) -> dict[str, Any] | None:
    """The manifest of a finished dataset in `folder`, or None (absent or interrupted)."""
    manifest = read_json(location(folder) / MANIFEST)
    return manifest if manifest is not None and manifest.get("status") == COMPLETE else None


def check_split_access(split: str, final_run: Mapping[str, Any] | None) -> None:
    """The test split is read only to evaluate a final run: `final_run` is that run's record
    (`run.json`, stage "final"). Tuning and training never read it (DESIGN.md §6).

    Raises:
        UserError: an unknown split, or the test split without a final run's record.
    """
    if split not in schema.SPLITS:
        raise UserError(f"unknown split {split!r}; choose from {schema.SPLITS}")
    if split == "test" and (final_run is None or final_run.get("stage") != "final"):
        stage = "no run" if final_run is None else f"a {final_run.get('stage')!r}-stage run"
        raise UserError(
            f"the test split is read only to evaluate a final run, not for {stage}: tuning and "
            "training see train and val alone"
        )


@dataclass(frozen=True)
class BuiltDataset:
    """A finished dataset, checked once (`open_dataset`): its folder and manifest."""

    folder: Location
    manifest: dict[str, Any]

    @cached_property
    def shapes(self) -> schema.Shapes:
        return schema.Shapes(**self.manifest["shapes"])

    @property
    def num_identities(self) -> int:
        return self.shapes.num_identities

    @property
    def data_hash(self) -> str:
        return self.manifest["data_hash"]

    @property
    def teacher(self) -> dict[str, Any]:
        """The teacher's provenance (source, checkpoint hashes, face accuracy)."""
        return self.manifest["teacher"]

    @property
    def synthetic(self) -> bool:
        return self.manifest["synthetic"]

    def reads_from_storage(self, mode: str) -> bool:
        """Whether trials and Ray Train workers read this dataset from its storage themselves
        (`resources.data`: "storage", or "auto" above 4 GiB on disk — the paper preset's ~15 GB
        splits) rather than get it read once and shared through Ray's object store."""
        return mode == "storage" or (
            mode == "auto" and self.manifest.get("bytes_on_disk", 0) > STORAGE_READ_BYTES
        )

    def read(
        self,
        split: str,
        columns: list[str] | None = None,
        stage: str = DATA,
        *,
        final_run: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """One split's good rows of a stage (`data`, or `pairs` for the faces) as numpy columns,
        sorted by key. The test split needs the record of the final run it evaluates
        (`check_split_access`)."""
        check_split_access(split, final_run)
        where = pads.field(schema.SPLIT) == split
        if stage == PAIRS:
            where = where & (pads.field(schema.ERROR) == "")
        table = parquet(self.folder / stage).to_table(columns=columns, filter=where)
        table = table.sort_by(schema.KEY) if schema.KEY in table.column_names else table
        return {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }


def parquet(folder: Location) -> pads.Dataset:
    """The Parquet files of a folder, wherever it is, as one pyarrow dataset."""
    return pads.dataset(folder.path, format="parquet", filesystem=folder.fs)


def open_dataset(
    folder: str | os.PathLike | Location, config: Config | None = None
) -> BuiltDataset:
    """Open a finished dataset; with `config`, also check it was built with the config's data
    settings (its data hash).

    Raises:
        UserError: no finished dataset in `folder`, or one built with other data settings
            (naming each setting that differs).
    """
    folder = location(folder)
    manifest = finished_manifest(folder)
    if manifest is None:
        preset = f" --preset {config.preset}" if config is not None else ""
        raise UserError(
            f"{folder}: no finished dataset there; build it with `ikd data build{preset}`"
        )
    if config is not None and manifest["data_hash"] != config.data_hash():
        raise UserError(
            f"{folder} was built with other data settings than this run's: "
            + ", ".join(_differences(manifest["config"], config.to_dict()))
        )
    return BuiltDataset(folder, manifest)


def _differences(theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """The data settings in which a dataset's recorded config (as stored, from any version of
    ikd) differs from a run's, as `key=built (run: ours)`."""
    differences = [
        f"{section}.{key}={theirs.get(section, {}).get(key)!r} (run: {mine[section][key]!r})"
        for section in DATA_SECTIONS
        if section != "preset"
        for key in mine[section]
        if section != "data" or key != "root"
        if theirs.get(section, {}).get(key) != mine[section][key]
    ]
    if theirs.get("preset") != mine["preset"]:
        differences.insert(0, f"preset={theirs.get('preset')!r} (run: {mine['preset']!r})")
    return differences or ["the dataset format"]
