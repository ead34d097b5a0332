"""Preview PNGs of micro-Doppler spectrograms: a grid (identities × walks) and one labelled plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ikd.config import DSPConfig, RadarConfig
from ikd.radar.captures import WalkWindows
from ikd.radar.dsp import columns_per_frame, decibel_scale, doppler_length, velocity_axis


def render_previews(
    walks: Sequence[WalkWindows],
    radar: RadarConfig,
    dsp: DSPConfig,
    folder: str | os.PathLike,
    title: str,
) -> list[Path]:
    """Write `grid.png` (rows identities, columns walks) and `spectrogram.png`; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identities = sorted({w.identity for w in walks})
    walk_ids = sorted({w.walk for w in walks})
    by_key = {(w.identity, w.walk): w for w in walks}

    figure = Figure(figsize=(2.2 * len(walk_ids), 1.8 * len(identities) + 0.4))
    axes = figure.subplots(len(identities), len(walk_ids), squeeze=False)
    for r, identity in enumerate(identities):
        for c, walk_id in enumerate(walk_ids):
            ax = axes[r, c]
            walk = by_key.get((identity, walk_id))
            if walk is None or walk.error:
                ax.text(0.5, 0.5, "missing" if walk is None else "failed", ha="center", va="center")
            else:
                ax.imshow(
                    _decibels(walk, dsp),
                    origin="lower",
                    aspect="auto",
                    extent=_extent(walk, radar, dsp),
                    cmap="jet",
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"id {identity}")
            if r == len(identities) - 1:
                ax.set_xlabel(f"walk {walk_id}")
    figure.suptitle(f"{title}: micro-Doppler per identity (rows) and walk (columns)")
    figure.tight_layout()
    grid = folder / "grid.png"
    FigureCanvasAgg(figure).print_png(grid)

    first = next(w for w in walks if not w.error)
    figure = Figure(figsize=(7, 4.5))
    ax = figure.subplots()
    shown = ax.imshow(
        _decibels(first, dsp) * dsp.dynamic_range_db - dsp.dynamic_range_db,
        origin="lower",
        aspect="auto",
        extent=_extent(first, radar, dsp),
        cmap="jet",
    )
    figure.colorbar(shown, ax=ax, label="dB below peak")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("radial velocity toward radar (m/s)")
    ax.set_title(f"{title}: identity {first.identity}, walk {first.walk}")
    figure.tight_layout()
    single = folder / "spectrogram.png"
    FigureCanvasAgg(figure).print_png(single)
    return [grid, single]


def _decibels(walk: WalkWindows, dsp: DSPConfig) -> np.ndarray:
    return decibel_scale(walk.spectrogram, dsp.dynamic_range_db)


def _extent(walk: WalkWindows, radar: RadarConfig, dsp: DSPConfig) -> list[float]:
    """[t0, t1, v0, v1] of a walk's spectrogram, s and m/s, pixel edges."""
    velocity = velocity_axis(radar, doppler_length(radar, dsp))
    step = velocity[1] - velocity[0]
    duration = walk.spectrogram.shape[1] / columns_per_frame(radar, dsp) * radar.frame_period_s
    return [0.0, duration, velocity[0] - step / 2, velocity[-1] + step / 2]
