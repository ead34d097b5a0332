"""Synthetic capture folders: the walkers as a real recording session would leave them.

`ikd data simulate` writes each synthetic walk as a DCA1000 `.bin` (the exact FMCW path, quantised)
with the webcam's frames beside it and one `metadata.json` (the layout of ikd/radar/captures.py and
the README), so the real-data path can be exercised end to end. It joins the radar (ikd/radar/)
and the faces (ikd/face/), which is why it lives in the data layer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ikd.config import Config, reductions
from ikd.face.synthetic import walk_frame
from ikd.radar.captures import FORMAT, METADATA
from ikd.radar.dca1000 import expected_bytes, quantize, write_bin
from ikd.radar.scene import draw_walk
from ikd.radar.simulate import simulate_adc

log = logging.getLogger(__name__)


def capture_folder_bytes(config: Config) -> int:
    """Disk space `simulate_captures` needs for the config's walks."""
    synthetic, radar = config.synthetic, config.radar
    walks = synthetic.num_identities * synthetic.walks_per_identity
    return walks * expected_bytes(
        config.num_frames, radar.num_chirps, radar.num_rx, radar.num_samples
    )


def simulate_captures(
    config: Config,
    folder: str | os.PathLike,
    *,
    webcam: bool = True,
    progress: bool = True,
    identities: Iterable[int] | None = None,
) -> Path:
    """Write the config's synthetic walks as DCA1000 captures plus `metadata.json`.

    `identities` (default: the config's 0 … num_identities − 1) may name walkers beyond the
    config's: identity i is the same person in every preset, so identities ≥ num_identities are
    walkers a model trained on the config's dataset never saw (the open-set check).

    Uses the exact ADC path, quantised with `synthetic.adc_full_scale`, and writes the webcam's
    frames beside each capture as JPEGs (`face.frame_rate_hz`). The metadata is rewritten after
    every capture, so an interrupted run leaves a valid folder. Returns the metadata path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    synthetic = config.synthetic
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "radar": dataclasses.asdict(config.radar),
        "source": {
            "synthetic": True,
            "preset": config.preset,
            "config_hash": config.hash(),
            "seed": synthetic.seed,
            "reduced_from_paper": reductions(config),
        },
        "captures": [],
    }
    path = folder / METADATA
    chosen = range(synthetic.num_identities) if identities is None else identities
    pairs = [(i, w) for i in chosen for w in range(synthetic.walks_per_identity)]
    for identity, walk_index in tqdm(
        pairs, desc="simulate captures", unit="walk", disable=not progress
    ):
        name = f"id{identity:03d}_walk{walk_index:03d}.bin"
        write_bin(
            folder / name,
            quantize(simulate_adc(config, identity, walk_index), synthetic.adc_full_scale),
        )
        walk = draw_walk(synthetic.seed, identity, walk_index)
        entry = {
            "file": name,
            "identity": identity,
            "walk": walk_index,
            "num_frames": config.num_frames,
        }
        if webcam:
            frames = Path("frames") / name.removesuffix(".bin")
            _write_webcam(config, identity, walk_index, folder / frames)
            entry |= {
                "frames": frames.as_posix(),
                "frame_rate_hz": config.face.frame_rate_hz,
                "frame_offset_s": 0.0,
            }
        entry |= {"direction": "toward" if walk.toward else "away", "snr_db": round(walk.snr_db, 3)}
        metadata["captures"].append(entry)
        path.write_text(json.dumps(metadata, indent=2))
    log.info("wrote %d captures and %s", len(pairs), path)
    return path


def _write_webcam(config: Config, identity: int, walk: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rate = config.face.frame_rate_hz
    duration = config.num_frames * config.radar.frame_period_s
    for frame in range(int(duration * rate) + 1):
        image = walk_frame(config.synthetic.seed, identity, walk, frame, rate)
        Image.fromarray(image).save(folder / f"{frame:06d}.jpg", quality=92)
