"""Capture folders (real or synthetic) and the batch functions that turn walks into gait images.

A capture folder holds DCA1000 `.bin` files and one `metadata.json`:

    {"format": "ikd-captures/1",
     "radar": {...RadarConfig fields; missing ones take the defaults...},
     "captures": [{"file": "id000_walk000.bin", "identity": 0, "walk": 0, "num_frames": 121,
                   "frames": "frames/id000_walk000", "frame_rate_hz": 30.0, "frame_offset_s": 0.0,
                   ...any further labels...}, ...]}

`frames` is the capture's webcam folder: images sorted by name are video frames 0, 1, … at
`frame_rate_hz`, frame 0 taken `frame_offset_s` after the radar's first chirp.

Synthetic captures written by `ikd data simulate` (ikd/data/export.py) have exactly the layout a real recording
session should have. The batch functions are shaped ``fn(batch: dict[str, np.ndarray], *,
config) -> dict[str, np.ndarray]``: bind the config (``functools.partial`` or Ray Data's
``fn_kwargs``) and Ray Data can map them. A capture that fails yields one row whose `error` names
the file and what was wrong, and the batch goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ikd.config import Config, DSPConfig, RadarConfig, build
from ikd.data import schema
from ikd.errors import CaptureError, ConfigError
from ikd.radar.dca1000 import read_bin
from ikd.radar.dsp import range_band, range_fft, spectrogram_windows, walk_spectrogram
from ikd.radar.simulate import simulate_walk

log = logging.getLogger(__name__)

METADATA = "metadata.json"
FORMAT = "ikd-captures/1"
REQUIRED = ("file", "identity", "walk", "num_frames")
COLUMNS = (
    schema.IDENTITY,
    schema.WALK,
    schema.WINDOW,
    schema.CENTRE_TIME,
    schema.SPECTROGRAM,
    schema.ERROR,
)


@dataclass(frozen=True)
class WalkWindows:
    """The gait images of one walk, or why there are none."""

    identity: int
    walk: int
    spectrogram: np.ndarray  # (D, T) the whole walk's merged micro-Doppler magnitudes
    images: np.ndarray  # (W, 3, H, H) float32 in [0, 1]
    centre_time_s: np.ndarray  # (W,) s from the walk's first chirp
    error: str = ""


def read_metadata(folder: str | os.PathLike) -> tuple[RadarConfig, list[dict[str, Any]]]:
    """The radar settings and capture list of a capture folder, strictly validated.

    Raises:
        CaptureError: a missing or malformed metadata.json, naming the file and the problem.
    """
    path = Path(folder) / METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise CaptureError(
            f"{path}: no such file; a capture folder needs a {METADATA} (see README)"
        ) from None
    except OSError as error:
        raise CaptureError(f"{path}: cannot read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise CaptureError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise CaptureError(f"{path}: format must be {FORMAT!r}, found {found!r}")
    try:
        radar = build(RadarConfig, metadata.get("radar", {}))
    except ConfigError as error:
        raise CaptureError(f"{path}: radar: {error}") from None
    captures = metadata.get("captures", [])
    if not isinstance(captures, list):
        raise CaptureError(f"{path}: 'captures' must be a list")
    for number, entry in enumerate(captures):
        if not isinstance(entry, dict):
            raise CaptureError(f"{path}: capture #{number} must be an object")
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise CaptureError(f"{path}: capture #{number} lacks {', '.join(missing)}")
        for key, low in (("identity", 0), ("walk", 0), ("num_frames", 1)):
            if not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < low:
                raise CaptureError(
                    f"{path}: capture #{number}: {key} must be an integer ≥ {low}, got {entry[key]!r}"
                )
    return radar, captures


def capture_windows_batch(batch: dict[str, np.ndarray], *, config: Config) -> dict[str, np.ndarray]:
    """Real or exported captures → gait images. `config.radar` must be the folder's radar.

    Args:
        batch: one row per capture: `path` (str), `identity`, `walk`, `num_frames` (int).

    Returns:
        Rows of `windows_to_batch`: one per gait window, or one error row per bad capture.
    """
    profiles = _capture_profiles(batch, config.radar, config.dsp)
    return windows_to_batch(
        _windows(batch, config.radar, config.dsp, profiles), config.dsp.image_size
    )


def walk_windows_batch(batch: dict[str, np.ndarray], *, config: Config) -> dict[str, np.ndarray]:
    """Synthetic walks simulated in-stream with the fast path → gait images.

    Args:
        batch: one row per walk: `identity` and `walk` (int).

    Returns:
        Rows of `windows_to_batch`.
    """
    profiles = _synthetic_profiles(batch, config)
    return windows_to_batch(
        _windows(batch, config.radar, config.dsp, profiles), config.dsp.image_size
    )


def windows_to_batch(walks: Iterable[WalkWindows], image_size: int) -> dict[str, np.ndarray]:
    """Flatten walks into rows (N of them); every batch has the same column shapes, error rows
    included, so Ray Data can concatenate them.

    Returns:
        `identity`, `walk`, `window` (N,) int64; `centre_time_s` (N,) float64 (NaN on error
        rows); `spectrogram` (N, 3, H, H) float32 gait images in [0, 1] (zeros on error rows);
        `error` (N,) str, empty when the row is good.
    """
    columns: dict[str, list[np.ndarray]] = {key: [] for key in COLUMNS}
    for w in walks:
        count = 1 if w.error else len(w.images)
        columns[schema.IDENTITY].append(np.full(count, w.identity, np.int64))
        columns[schema.WALK].append(np.full(count, w.walk, np.int64))
        columns[schema.WINDOW].append(np.arange(count, dtype=np.int64))
        columns[schema.CENTRE_TIME].append(np.full(1, np.nan) if w.error else w.centre_time_s)
        images = np.zeros((1, 3, image_size, image_size), np.float32) if w.error else w.images
        columns[schema.SPECTROGRAM].append(np.ascontiguousarray(images, dtype=np.float32))
        columns[schema.ERROR].append(np.full(count, w.error, dtype=object))
    return {key: np.concatenate(values) for key, values in columns.items()}


def iter_walk_windows(
    config: Config, folder: str | os.PathLike | None, num_identities: int, num_walks: int
) -> Iterator[WalkWindows]:
    """Windows of the first identities' first walks: simulated in-stream, or from a capture folder.

    For a folder, the radar settings come from its metadata; `config` gives the DSP.
    """
    if folder is None:
        identities = np.arange(min(num_identities, config.synthetic.num_identities))
        walks = np.arange(min(num_walks, config.synthetic.walks_per_identity))
        rows = {
            "identity": np.repeat(identities, len(walks)),
            "walk": np.tile(walks, len(identities)),
        }
        yield from _windows(rows, config.radar, config.dsp, _synthetic_profiles(rows, config))
        return
    radar, captures = read_metadata(folder)
    identities = sorted({c["identity"] for c in captures})[:num_identities]
    chosen = [
        c
        for identity in identities
        for c in sorted(
            (c for c in captures if c["identity"] == identity), key=lambda c: c["walk"]
        )[:num_walks]
    ]
    if not chosen:
        raise CaptureError(f"{Path(folder) / METADATA} lists no captures")
    batch = capture_rows(folder, chosen)
    yield from _windows(batch, radar, config.dsp, _capture_profiles(batch, radar, config.dsp))


def capture_rows(
    folder: str | os.PathLike, captures: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Metadata entries → the input columns of `capture_windows_batch`, one row per capture."""
    return {
        schema.PATH: np.array([str(Path(folder) / c["file"]) for c in captures], dtype=object),
        schema.IDENTITY: np.array([c["identity"] for c in captures], np.int64),
        schema.WALK: np.array([c["walk"] for c in captures], np.int64),
        schema.NUM_FRAMES: np.array([c["num_frames"] for c in captures], np.int64),
    }


def _synthetic_profiles(
    batch: dict[str, np.ndarray], config: Config
) -> Callable[[int], np.ndarray]:
    return lambda row: simulate_walk(config, int(batch["identity"][row]), int(batch["walk"][row]))


def _capture_profiles(
    batch: dict[str, np.ndarray], radar: RadarConfig, dsp: DSPConfig
) -> Callable[[int], np.ndarray]:
    bins = range_band(radar, dsp)

    def profiles(row: int) -> np.ndarray:
        frames = int(batch[schema.NUM_FRAMES][row])
        cube = read_bin(
            batch[schema.PATH][row], frames, radar.num_chirps, radar.num_rx, radar.num_samples
        )
        return range_fft(cube, bins)

    return profiles


def _windows(
    batch: dict[str, np.ndarray],
    radar: RadarConfig,
    dsp: DSPConfig,
    profiles: Callable[[int], np.ndarray],
) -> Iterator[WalkWindows]:
    for row in range(len(batch["identity"])):
        identity, walk = int(batch["identity"][row]), int(batch["walk"][row])
        source = (
            str(batch[schema.PATH][row])
            if schema.PATH in batch
            else f"synthetic identity {identity} walk {walk}"
        )
        try:
            spectrogram = walk_spectrogram(profiles(row), radar, dsp)
            images, centres = spectrogram_windows(spectrogram, radar, dsp)
        except CaptureError as error:
            message = str(error) if str(error).startswith(source) else f"{source}: {error}"
            log.warning("skipping %s", message)
            empty = np.zeros((0, 0), np.float32)
            yield WalkWindows(
                identity, walk, empty, np.zeros((0, 3, 1, 1), np.float32), np.zeros(0), message
            )
        else:
            yield WalkWindows(identity, walk, spectrogram, images, centres)
