"""Preview PNGs of micro-Doppler spectrograms: a grid (identities × walks) and one labelled plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ikd.config import Config
from ikd.radar.captures import WalkWindows
from ikd.radar.dsp import decibel_scale, velocity_axis


def render_previews(
    walks: Sequence[WalkWindows], config: Config, folder: str | os.PathLike, title: str
) -> list[Path]:
    """Write `grid.png` (rows identities, columns walks) and `spectrogram.png`; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identities = sorted({w.identity for w in walks})
    walk_ids = sorted({w.walk for w in walks})
    by_key = {(w.identity, w.walk): w for w in walks}

    fig, axes = plt.subplots(
        len(identities),
        len(walk_ids),
        figsize=(2.2 * len(walk_ids), 1.8 * len(identities)),
        squeeze=False,
    )
    for r, identity in enumerate(identities):
        for c, walk_id in enumerate(walk_ids):
            ax = axes[r, c]
            walk = by_key.get((identity, walk_id))
            if walk is None or walk.error:
                ax.text(0.5, 0.5, "missing" if walk is None else "error", ha="center", va="center")
            else:
                ax.imshow(
                    _image(walk, config),
                    origin="lower",
                    aspect="auto",
                    extent=_extent(walk, config),
                    cmap="jet",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"id {identity}")
            if r == len(identities) - 1:
                ax.set_xlabel(f"walk {walk_id}")
    fig.suptitle(f"{title}: micro-Doppler per identity (rows) and walk (columns)")
    fig.tight_layout()
    grid = folder / "grid.png"
    fig.savefig(grid, dpi=90)
    plt.close(fig)

    first = next(w for w in walks if not w.error)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = ax.imshow(
        _image(first, config) * config.dsp.dynamic_range_db - config.dsp.dynamic_range_db,
        origin="lower",
        aspect="auto",
        extent=_extent(first, config),
        cmap="jet",
    )
    fig.colorbar(shown, ax=ax, label="dB below peak")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("radial velocity toward radar (m/s)")
    ax.set_title(f"{title}: identity {first.identity}, walk {first.walk}")
    fig.tight_layout()
    single = folder / "spectrogram.png"
    fig.savefig(single, dpi=110)
    plt.close(fig)
    return [grid, single]


def _image(walk: WalkWindows, config: Config) -> np.ndarray:
    return decibel_scale(walk.spectrogram, config.dsp.dynamic_range_db)


def _extent(walk: WalkWindows, config: Config) -> list[float]:
    window = config.dsp.doppler_window or config.radar.num_chirps
    velocity = velocity_axis(config.radar, window)
    step = velocity[1] - velocity[0]
    per_frame = config.radar.num_chirps // window
    duration = walk.spectrogram.shape[1] / per_frame * config.radar.frame_period_s
    return [0.0, duration, velocity[0] - step / 2, velocity[-1] + step / 2]
