"""Column names and encodings of the paired face–gait dataset: the one place that defines them.

Arrays are stored as raw little-endian bytes (Arrow `binary`) so any Parquet reader, with or
without Ray, can decode them; their shapes live in the dataset's manifest (`Shapes`).

- spectrogram: (H, H) uint8 = round(255·x) of the gait image x ∈ [0, 1]; readers return
  float32 (3, H, H), the channel replicated (the students are ImageNet-shaped CNNs).
- face: (3, S, S) uint8 RGB, the aligned face crop at the gait window's centre time.
- teacher_embedding: (K, 512) float32, L2-normalised FaceNet embeddings of K views of the face
  (view 0 unaugmented, views 1… augmented).
- teacher_logits: (K, N) float32, the teacher's linear identity classifier on those embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ikd.models import EMBEDDING_DIM

PATH = "path"  # input rows of real captures: the .bin file
NUM_FRAMES = "num_frames"  # … and its radar frames
IDENTITY = "identity"
WALK = "walk"
WINDOW = "window"
SPLIT = "split"
KEY = "key"  # identity·10⁶ + walk·10³ + window: a stable order for every reader
CENTRE_TIME = "centre_time_s"
SPECTROGRAM = "spectrogram"
FACE = "face"
ERROR = "error"
TEACHER_EMBEDDING = "teacher_embedding"
TEACHER_LOGITS = "teacher_logits"

SPLITS = ("train", "val", "test")
# What the readers decode into training samples (`decode_batch`).
SAMPLE_COLUMNS = (KEY, IDENTITY, WALK, WINDOW, SPECTROGRAM, TEACHER_EMBEDDING, TEACHER_LOGITS)


@dataclass(frozen=True)
class Shapes:
    """Array shapes of one dataset (written to its manifest)."""

    spectrogram_size: int  # H
    face_size: int  # S
    views: int  # K
    num_identities: int  # N

    def decode_spectrogram(self, blobs: list[bytes]) -> np.ndarray:
        """(B,) bytes → (B, 3, H, H) float32 in [0, 1]."""
        return np.repeat(self.decode_gait(blobs)[:, None].astype(np.float32) / 255.0, 3, axis=1)

    def decode_gait(self, blobs: list[bytes]) -> np.ndarray:
        """(B,) bytes → (B, H, H) uint8, the stored form (training keeps it compact)."""
        return _stack(blobs, np.uint8, (self.spectrogram_size, self.spectrogram_size))

    def decode_face(self, blobs: list[bytes]) -> np.ndarray:
        """(B,) bytes → (B, 3, S, S) uint8."""
        return _stack(blobs, np.uint8, (3, self.face_size, self.face_size))

    def decode_embedding(self, blobs: list[bytes]) -> np.ndarray:
        """(B,) bytes → (B, K, 512) float32."""
        return _stack(blobs, "<f4", (self.views, EMBEDDING_DIM))

    def decode_logits(self, blobs: list[bytes]) -> np.ndarray:
        """(B,) bytes → (B, K, N) float32."""
        return _stack(blobs, "<f4", (self.views, self.num_identities))


def decode_batch(batch: dict[str, Any], shapes: Shapes) -> dict[str, np.ndarray]:
    """Stored columns → training arrays: spectrogram (B, 3, H, H) float32, teacher_embedding
    (B, K, 512), teacher_logits (B, K, N) float32, identity / walk / window / key (B,) int64."""
    return {
        SPECTROGRAM: shapes.decode_spectrogram(list(batch[SPECTROGRAM])),
        TEACHER_EMBEDDING: shapes.decode_embedding(list(batch[TEACHER_EMBEDDING])),
        TEACHER_LOGITS: shapes.decode_logits(list(batch[TEACHER_LOGITS])),
        **{name: np.asarray(batch[name], np.int64) for name in (IDENTITY, WALK, WINDOW, KEY)},
    }


def row_key(identity: np.ndarray, walk: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The `key` column, (B,) int64."""
    return (
        np.asarray(identity, np.int64) * 1_000_000
        + np.asarray(walk, np.int64) * 1_000
        + np.asarray(window, np.int64)
    )


def key_parts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`row_key`'s inverse: (identity, walk, window), each (B,) int64."""
    key = np.asarray(key, np.int64)
    return key // 1_000_000, key // 1_000 % 1_000, key % 1_000


def to_storage(
    batch: dict[str, np.ndarray], *, splits: dict[tuple[int, int], str]
) -> dict[str, np.ndarray]:
    """Gait windows with faces (radar/captures.windows_to_batch + data/pairs.py) → stored columns.

    Args:
        splits: (identity, walk) → split name.
    """
    identity, walk, window = batch[IDENTITY], batch[WALK], batch[WINDOW]
    if np.any(np.asarray(window) >= 1000):
        raise ValueError("a walk of over 1000 gait windows does not fit the key")
    return {
        KEY: row_key(identity, walk, window),
        IDENTITY: identity,
        WALK: walk,
        WINDOW: window,
        SPLIT: np.array(
            [splits[int(i), int(w)] for i, w in zip(identity, walk, strict=True)], dtype=object
        ),
        CENTRE_TIME: batch[CENTRE_TIME],
        SPECTROGRAM: encode_spectrogram(batch[SPECTROGRAM]),
        FACE: encode(batch[FACE]),
        ERROR: batch[ERROR].astype(str).astype(object),
    }


def encode_spectrogram(images: np.ndarray) -> np.ndarray:
    """(B, 3, H, H) float gait images in [0, 1] → (B,) bytes of (H, H) uint8 (channel 0)."""
    return encode(np.clip(np.rint(images[:, 0] * 255), 0, 255).astype(np.uint8))


def encode(arrays: np.ndarray) -> np.ndarray:
    """(B, ...) array → (B,) object array of little-endian bytes."""
    little = arrays.astype(arrays.dtype.newbyteorder("<"), copy=False)
    out = np.empty(len(arrays), dtype=object)
    out[:] = [np.ascontiguousarray(a).tobytes() for a in little]
    return out


def _stack(blobs: list[bytes], dtype: str | type, shape: tuple[int, ...]) -> np.ndarray:
    flat = np.frombuffer(b"".join(blobs), dtype=dtype)
    return flat.reshape(len(blobs), *shape).astype(
        np.dtype(dtype).newbyteorder("=")
    )  # a writable copy
