"""Run folders as a report reads them: the records only (config.json, run.json, metrics.jsonl,
test.json, test_predictions.parquet), never a checkpoint, so committed records without
checkpoints render the same report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow.parquet as pq

from ikd.config import CONFIG, saved_value
from ikd.report.stats import walk_accuracy, worst_accuracy
from ikd.storage import Location, location, read_json
from ikd.train.runs import METRICS, RUN, TEST, TEST_PREDICTIONS, read_metrics, run_status


@dataclass(frozen=True)
class RunRecord:
    """One run folder `<runs_root>/<study>/<stage>/<variant>-<hash>-seed<seed>`, read."""

    folder: Location  # a path or a URI (`ikd.storage`)
    record: dict[str, Any]  # run.json
    config: dict[str, Any]  # config.json
    metrics: list[dict[str, Any]]  # metrics.jsonl, a line per epoch
    test: dict[str, Any] | None  # test.json (final runs)

    @property
    def study(self) -> str:
        return self.folder.parent.parent.name

    @property
    def stage(self) -> str:
        return self.record.get("stage", self.folder.parent.name)

    @property
    def variant(self) -> str:
        return self.folder.name.rsplit("-", 2)[0]

    @property
    def seed(self) -> int:
        return int(self.record.get("seed", self.config.get("train", {}).get("seed", 0)))

    @property
    def status(self) -> str:
        return run_status(self.folder, self.record)

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's metrics (empty before the first)."""
        return self.metrics[-1] if self.metrics else {}

    def value(self, key: str) -> float:
        """A number of the test record (`test/...`) or of the last epoch; NaN where absent."""
        source = self.test if key.startswith("test/") else self.last
        value = (source or {}).get(key)
        return float(value) if isinstance(value, int | float) else math.nan

    @property
    def worst10_acc(self) -> float:
        """Test accuracy of the worst 10 % of identities (`stats.worst_accuracy`); NaN without
        a test record."""
        return worst_accuracy((self.test or {}).get("test/per_identity") or [])

    @property
    def train_seconds(self) -> float:
        return float(sum(line.get("seconds", 0.0) for line in self.metrics))

    def param(self, key: str) -> Any:
        """A dotted config value of the run, e.g. "identitykd.tau"."""
        return saved_value(self.config, key)

    @cached_property
    def walk(self) -> tuple[float, int]:
        """(walk-level test accuracy, walks) from the per-window test predictions."""
        path = self.folder / TEST_PREDICTIONS
        if not path.exists():
            return math.nan, 0
        columns = ["identity", "walk", "logits"]
        return walk_accuracy(
            pq.read_table(path.path, columns=columns, filesystem=path.fs).to_pandas()
        )

    def row(self) -> dict[str, Any]:
        """The run as one row of runs.csv."""
        walk, walks = self.walk if self.test else (math.nan, 0)
        return {
            "study": self.study,
            "variant": self.variant,
            "stage": self.stage,
            "seed": self.seed,
            "run_hash": self.record.get("run_hash", ""),
            "git": self.record.get("git", ""),
            "status": self.status,
            "method": self.record.get("method", ""),
            "student": self.record.get("student", ""),
            "epochs": len(self.metrics),
            "train_seconds": round(self.train_seconds, 2),
            "val_acc": self.value("val/acc"),
            "val_worst_acc": self.value("val/worst_acc"),
            "test_acc": self.value("test/acc"),
            "test_recall": self.value("test/recall"),
            "test_f1": self.value("test/f1"),
            "test_worst_acc": self.value("test/worst_acc"),
            "test_walk_acc": walk,
            "test_walks": walks,
            "folder": f"{self.study}/{self.folder.parent.name}/{self.folder.name}",
        }


def read_run(folder: str | Location) -> RunRecord | None:
    """A run folder's records (None when it has no run.json or config.json)."""
    folder = location(folder)
    record, config = read_json(folder / RUN), read_json(folder / CONFIG)
    if record is None or config is None:
        return None
    return RunRecord(
        folder, record, config, read_metrics(folder / METRICS), read_json(folder / TEST)
    )
