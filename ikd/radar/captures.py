"""Capture folders (real or synthetic) and the batch functions that turn walks into gait images.

A capture folder holds DCA1000 `.bin` files and one `metadata.json`:

    {"format": "ikd-captures/1",
     "radar": {...RadarConfig fields...},
     "captures": [{"file": "id000_walk000.bin", "identity": 0, "walk": 0, "num_frames": 121,
                   ...any further labels...}, ...]}

Synthetic captures written by `ikd data simulate` have exactly the layout a real recording
session should have. The batch functions are shaped ``fn(batch: dict[str, np.ndarray]) ->
dict[str, np.ndarray]`` so Ray Data can map them; a capture that fails yields one row whose
`error` names the file and what was wrong, and the batch goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ikd.config import Config, RadarConfig
from ikd.errors import CaptureError, ConfigError
from ikd.radar.dca1000 import quantize, read_bin, write_bin
from ikd.radar.dsp import range_band, range_fft, spectrogram_windows, walk_spectrogram
from ikd.radar.scene import draw_walk
from ikd.radar.simulate import simulate_adc, simulate_walk

log = logging.getLogger(__name__)

METADATA = "metadata.json"
FORMAT = "ikd-captures/1"
REQUIRED = ("file", "identity", "walk", "num_frames")


@dataclass(frozen=True)
class WalkWindows:
    """The gait images of one walk, or why there are none."""

    identity: int
    walk: int
    spectrogram: np.ndarray  # (D, T) the whole walk's merged micro-Doppler magnitudes
    images: np.ndarray  # (W, 3, H, H) float32 in [0, 1]
    centre_time_s: np.ndarray  # (W,)
    error: str = ""


def simulate_captures(config: Config, folder: str | os.PathLike, *, progress: bool = True) -> Path:
    """Write the preset's synthetic walks as DCA1000 captures plus `metadata.json`.

    Uses the exact ADC path, quantised with `synthetic.adc_full_scale`. Returns the metadata path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    synthetic, radar = config.synthetic, config.radar
    pairs = [
        (i, w) for i in range(synthetic.num_identities) for w in range(synthetic.walks_per_identity)
    ]
    entries = []
    for identity, walk_index in tqdm(
        pairs, desc="simulate captures", unit="walk", disable=not progress
    ):
        walk = draw_walk(synthetic.seed, identity, walk_index)
        cube = quantize(simulate_adc(config, identity, walk_index), synthetic.adc_full_scale)
        name = f"id{identity:03d}_walk{walk_index:03d}.bin"
        write_bin(folder / name, cube)
        entries.append(
            {
                "file": name,
                "identity": identity,
                "walk": walk_index,
                "num_frames": config.num_frames,
                "direction": "toward" if walk.toward else "away",
                "snr_db": round(walk.snr_db, 3),
            }
        )
    metadata = {
        "format": FORMAT,
        "radar": dataclasses.asdict(radar),
        "source": {
            "synthetic": True,
            "preset": config.preset,
            "config_hash": config.hash(),
            "seed": synthetic.seed,
        },
        "captures": entries,
    }
    path = folder / METADATA
    path.write_text(json.dumps(metadata, indent=2))
    log.info("wrote %d captures and %s", len(entries), path)
    return path


def read_metadata(folder: str | os.PathLike) -> tuple[RadarConfig, list[dict[str, Any]]]:
    """The radar settings and capture list of a capture folder (strictly validated)."""
    path = Path(folder) / METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise CaptureError(
            f"{path}: no such file; a capture folder needs a {METADATA} (see README)"
        ) from None
    except json.JSONDecodeError as error:
        raise CaptureError(f"{path}: not valid JSON ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CaptureError(f"{path}: format must be {FORMAT!r}, found {metadata.get('format')!r}")
    try:
        radar = Config.from_dict({"radar": metadata.get("radar", {})}).radar
    except ConfigError as error:
        raise CaptureError(f"{path}: {error}") from None
    captures = metadata.get("captures", [])
    for number, entry in enumerate(captures):
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise CaptureError(f"{path}: capture #{number} lacks {', '.join(missing)}")
    return radar, captures


def capture_windows_batch(batch: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """Real or exported captures → gait images. `config.radar` must be the folder's radar.

    Args:
        batch: columns `path` (str), `identity`, `walk`, `num_frames` (int), one row per capture.

    Returns:
        One row per gait window (see `windows_to_batch`), or one error row per bad capture.
    """
    return windows_to_batch(_windows(batch, config, _capture_profiles(batch, config)))


def walk_windows_batch(batch: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """Synthetic walks simulated in-stream with the fast path → gait images.

    Args:
        batch: columns `identity` and `walk` (int), one row per walk.
    """
    return windows_to_batch(_windows(batch, config, _synthetic_profiles(batch, config)))


def windows_to_batch(walks: Iterable[WalkWindows]) -> dict[str, np.ndarray]:
    """Flatten walks into rows: identity, walk, window, centre_time_s, spectrogram, error."""
    walks = list(walks)
    size = next((w.images.shape[-1] for w in walks if w.images.size), 1)
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("identity", "walk", "window", "centre_time_s", "spectrogram", "error")
    }
    for w in walks:
        count = len(w.images) if not w.error else 1
        images = w.images if not w.error else np.zeros((1, 3, size, size), np.float32)
        columns["identity"].append(np.full(count, w.identity, np.int64))
        columns["walk"].append(np.full(count, w.walk, np.int64))
        columns["window"].append(np.arange(count, dtype=np.int64))
        columns["centre_time_s"].append(w.centre_time_s if not w.error else np.full(1, np.nan))
        columns["spectrogram"].append(np.ascontiguousarray(images, dtype=np.float32))
        columns["error"].append(np.full(count, w.error, dtype=object))
    return {key: np.concatenate(values) for key, values in columns.items()}


def iter_walk_windows(
    config: Config, folder: str | os.PathLike | None, num_identities: int, num_walks: int
) -> Iterator[WalkWindows]:
    """Windows of the first identities' first walks: simulated in-stream, or from a capture folder."""
    if folder is None:
        identities = np.arange(min(num_identities, config.synthetic.num_identities))
        walks = np.arange(min(num_walks, config.synthetic.walks_per_identity))
        rows = {
            "identity": np.repeat(identities, len(walks)),
            "walk": np.tile(walks, len(identities)),
        }
        yield from _windows(rows, config, _synthetic_profiles(rows, config))
        return
    radar, captures = read_metadata(folder)
    config = dataclasses.replace(config, radar=radar)
    identities = sorted({c["identity"] for c in captures})[:num_identities]
    chosen = [
        c
        for identity in identities
        for c in sorted(
            (c for c in captures if c["identity"] == identity), key=lambda c: c["walk"]
        )[:num_walks]
    ]
    if not chosen:
        raise CaptureError(f"{folder}: {METADATA} lists no captures")
    batch = {
        "path": np.array([str(Path(folder) / c["file"]) for c in chosen], dtype=object),
        "identity": np.array([c["identity"] for c in chosen]),
        "walk": np.array([c["walk"] for c in chosen]),
        "num_frames": np.array([c["num_frames"] for c in chosen]),
    }
    yield from _windows(batch, config, _capture_profiles(batch, config))


def _synthetic_profiles(
    batch: dict[str, np.ndarray], config: Config
) -> Callable[[int], np.ndarray]:
    return lambda row: simulate_walk(config, int(batch["identity"][row]), int(batch["walk"][row]))


def _capture_profiles(batch: dict[str, np.ndarray], config: Config) -> Callable[[int], np.ndarray]:
    radar, bins = config.radar, range_band(config.radar, config.dsp)

    def profiles(row: int) -> np.ndarray:
        frames = int(batch["num_frames"][row])
        cube = read_bin(
            batch["path"][row], frames, radar.num_chirps, radar.num_rx, radar.num_samples
        )
        return range_fft(cube, bins)

    return profiles


def _windows(
    batch: dict[str, np.ndarray], config: Config, profiles: Callable[[int], np.ndarray]
) -> Iterator[WalkWindows]:
    for row in range(len(batch["identity"])):
        identity, walk = int(batch["identity"][row]), int(batch["walk"][row])
        source = (
            batch["path"][row] if "path" in batch else f"synthetic identity {identity} walk {walk}"
        )
        try:
            spectrogram = walk_spectrogram(profiles(row), config)
            images, centres = spectrogram_windows(spectrogram, config)
        except CaptureError as error:
            yield _failed(identity, walk, str(error))
        except ValueError as error:
            yield _failed(identity, walk, f"{source}: {error}")
        else:
            yield WalkWindows(identity, walk, spectrogram, images, centres)


def _failed(identity: int, walk: int, message: str) -> WalkWindows:
    log.warning("skipping %s", message)
    empty = np.zeros((0, 0), np.float32)
    return WalkWindows(
        identity, walk, empty, np.zeros((0, 3, 1, 1), np.float32), np.zeros(0), message
    )
