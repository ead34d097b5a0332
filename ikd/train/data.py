"""One split of a built dataset in memory, compact, and its deterministic epoch batches; and the
plain torch `Dataset` of a split (`PairedDataset`).

Training holds each split as stored — spectrograms uint8 (N, H, H), the teacher's K views as
float32 — and decodes one batch at a time, so a worker needs rows × (H² + K·(512 + N_id)·4) bytes
(laptop: 55 MB for the training split; paper: ~15 GB, see README "Training"). Every epoch's order
and face-view choice is a pure function of (seed, epoch): the same on every rank, in a resumed
run and in an unbroken one — what exact resume after a worker failure needs (DESIGN.md §7).
Rank r of W takes every W-th sample of the epoch's permutation, like `DistributedSampler`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ikd.data import schema
from ikd.data.dataset import BuiltDataset


@dataclass
class Samples:
    """A split: key, identity (n,) int64; gait (n, H, H) uint8; teacher_embedding (n, K, 512),
    teacher_logits (n, K, N) float32 — sorted by key."""

    key: torch.Tensor
    identity: torch.Tensor
    gait: torch.Tensor
    teacher_embedding: torch.Tensor
    teacher_logits: torch.Tensor

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], shapes: schema.Shapes) -> Samples:
        """Stored columns (`schema.SAMPLE_COLUMNS`, any row order) → samples sorted by key."""
        order = np.argsort(np.asarray(columns[schema.KEY]), kind="stable")

        def pick(name: str) -> list:
            return list(np.asarray(columns[name], dtype=object)[order])

        return cls(
            key=torch.as_tensor(np.asarray(columns[schema.KEY], np.int64)[order]),
            identity=torch.as_tensor(np.asarray(columns[schema.IDENTITY], np.int64)[order]),
            gait=torch.as_tensor(shapes.decode_gait(pick(schema.SPECTROGRAM))),
            teacher_embedding=torch.as_tensor(
                shapes.decode_embedding(pick(schema.TEACHER_EMBEDDING))
            ),
            teacher_logits=torch.as_tensor(shapes.decode_logits(pick(schema.TEACHER_LOGITS))),
        )

    @classmethod
    def from_batches(
        cls, batches: Iterable[dict[str, np.ndarray]], shapes: schema.Shapes
    ) -> Samples:
        """Samples from an iterable of stored-column batches (e.g. a Ray Data iterator)."""
        parts = list(batches)
        if not parts:
            return cls.from_columns({name: np.array([]) for name in schema.SAMPLE_COLUMNS}, shapes)
        return cls.from_columns(
            {
                name: np.concatenate([np.asarray(p[name]) for p in parts])
                for name in schema.SAMPLE_COLUMNS
            },
            shapes,
        )

    @classmethod
    def from_dataset(
        cls, dataset: BuiltDataset, split: str, final_run: Mapping[str, Any] | None = None
    ) -> Samples:
        """Read a split with pyarrow (no Ray): the plain loop's reader. The test split needs the
        record of the final run it evaluates (`dataset.check_split_access`)."""
        columns = dataset.read(split, list(schema.SAMPLE_COLUMNS), final_run=final_run)
        return cls.from_columns(columns, dataset.shapes)

    def __len__(self) -> int:
        return len(self.key)

    @property
    def views(self) -> int:
        return self.teacher_embedding.shape[1]

    def batches(
        self,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        train: bool,
        rank: int = 0,
        world: int = 1,
        device: torch.device | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches of one epoch, on `device` (default: the CPU).

        Training: a permutation and a face view per sample drawn from (seed, epoch); every rank
        gets the same number of samples (the tail of the permutation that does not divide by
        `world` is left out, as is each rank's last incomplete batch). Evaluation: key order,
        view 0 (the unaugmented face), every sample exactly once over the ranks.
        """
        n = len(self)
        if train:
            generator = torch.Generator().manual_seed(_mix(seed, epoch))
            order = torch.randperm(n, generator=generator)
            views = torch.randint(self.views, (n,), generator=generator)
            order = order[: n - n % world][rank::world]
            stop = len(order) - len(order) % batch_size
        else:
            order = torch.arange(n)[rank::world]
            views = torch.zeros(n, dtype=torch.long)
            stop = len(order)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            view = views[index]
            stored = {
                "spectrogram": self.gait[index],
                "identity": self.identity[index],
                "teacher_embedding": self.teacher_embedding[index, view],
                "teacher_logits": self.teacher_logits[index, view],
                "key": self.key[index],
            }
            yield to_device(stored, device)


def to_device(stored: dict[str, torch.Tensor], device: torch.device | None) -> dict:
    """A batch as gathered (uint8 spectrograms (B, H, H)) → on `device`, the spectrograms as the
    students take them: float in [0, 1], 3 channels, channels-last like their weights. On a GPU
    the uint8 batch is copied (pinned, asynchronously) and converted there: 1.6 ms per batch of
    128 at 256² on an H200, against 31.5 ms for converting on the host first
    (benchmarks/paper_cost.py). The CPU gives the values it always gave; a GPU's division rounds
    about half the pixels one float32 ulp differently (tests/test_gpu.py)."""
    if device is not None and device.type == "cuda":
        stored = {k: v.pin_memory().to(device, non_blocking=True) for k, v in stored.items()}
    spectrogram = (stored["spectrogram"].float() / 255.0)[:, None].expand(-1, 3, -1, -1)
    return {**stored, "spectrogram": spectrogram.contiguous(memory_format=torch.channels_last)}


def _mix(*numbers: int) -> int:
    """A 63-bit seed from integers (distinct tuples give unrelated streams)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)


def reseed(seed: int, epoch: int, rank: int) -> None:
    """Seed torch's global RNG (stochastic depth, dropout) for one epoch on one rank (epoch −1:
    the initial weights).

    Deriving the state from (seed, epoch, rank) at every epoch start is what restoring a saved RNG
    state would give, for any number of ranks, so checkpoints need not carry one.
    """
    torch.manual_seed(_mix(seed, epoch + 1, rank, 1))  # epoch ≥ −1


class PairedDataset(Dataset):
    """The plain torch view of one split (tests, debugging): sample i is the i-th key in order.
    The test split needs a final run's record (`check_split_access`)."""

    def __init__(
        self, dataset: BuiltDataset, split: str, final_run: Mapping[str, Any] | None = None
    ) -> None:
        self.shapes = dataset.shapes
        self.columns = dataset.read(split, list(schema.SAMPLE_COLUMNS), final_run=final_run)

    def __len__(self) -> int:
        return len(self.columns[schema.KEY])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = {name: values[index : index + 1] for name, values in self.columns.items()}
        return {
            name: torch.as_tensor(value[0])
            for name, value in schema.decode_batch(row, self.shapes).items()
        }
