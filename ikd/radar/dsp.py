"""Micro-Doppler DSP: ADC cube → range profiles → clutter removal → range-time map → STFT in the
walker's range band → merged spectrogram → gait images.

Pure, vectorised numpy/scipy (DESIGN.md §2). Shapes: F frames, C chirps per frame, A receive
antennas, S ADC samples per chirp, R kept range bins, B bins of the walker's band, D Doppler
bins, T spectrogram time bins, W gait windows, H image side. Velocities are radial speeds
*toward* the radar (approaching > 0, receding < 0), m/s.

Sign convention: the beat signal is TX·conj(RX), so the slow-time phase of a scatterer is
+4πR/λ and a receding scatterer has a positive slow-time frequency (TI's convention: its demo
reports positive radial velocity for targets moving away). The spectrogram's rows are flipped
so that approach speed increases with the row index.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from ikd.config import DSPConfig, RadarConfig
from ikd.errors import CaptureError


def hann(length: int) -> np.ndarray:
    """Periodic Hann window ½ − ½·cos(2πn/N), (N,) float32 (the window the fast path assumes)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


def range_band(radar: RadarConfig, dsp: DSPConfig) -> slice:
    """Range-FFT bins [first, stop) covering [range_min_m, range_max_m]; bin k lies at k·Δr m."""
    resolution = radar.range_resolution_m
    first = max(int(np.floor(dsp.range_min_m / resolution)), 0)
    stop = min(int(np.ceil(dsp.range_max_m / resolution)) + 1, radar.num_samples)
    return slice(first, stop)


def doppler_length(radar: RadarConfig, dsp: DSPConfig) -> int:
    """L, chirps per STFT segment (`dsp.doppler_window`, 0 meaning a whole frame)."""
    return dsp.doppler_window or radar.num_chirps


def columns_per_frame(radar: RadarConfig, dsp: DSPConfig) -> int:
    """Spectrogram time bins per radar frame, C // L."""
    return radar.num_chirps // doppler_length(radar, dsp)


def num_windows(num_frames: int, dsp: DSPConfig) -> int:
    """Gait windows cut from a walk of `num_frames` frames."""
    return max((num_frames - dsp.window_frames) // dsp.hop_frames + 1, 0)


def range_fft(cube: np.ndarray, bins: slice) -> np.ndarray:
    """Hann-windowed FFT over fast time, kept bins only.

    Args:
        cube: (F, C, A, S) complex ADC samples.
        bins: range bins to keep (see `range_band`).

    Returns:
        (F, C, A, R) complex64 range profiles.
    """
    window = hann(cube.shape[-1])
    out = np.empty((*cube.shape[:-1], len(range(*bins.indices(cube.shape[-1])))), np.complex64)
    for first in range(0, cube.shape[0], 8):  # a few frames at a time: bounded memory
        block = cube[first : first + 8].astype(np.complex64, copy=False) * window
        out[first : first + 8] = scipy.fft.fft(block, axis=-1)[..., bins]
    return out


def remove_static_clutter(profiles: np.ndarray) -> np.ndarray:
    """Subtract each (range bin, antenna)'s mean over slow time: (F, C, A, R) → same."""
    return profiles - profiles.mean(axis=(0, 1), keepdims=True)


def range_time_map(profiles: np.ndarray) -> np.ndarray:
    """Power per frame and range bin, summed over chirps and antennas: (F, C, A, R) → (F, R)."""
    return np.einsum("fcar,fcar->fr", profiles, profiles.conj()).real.astype(np.float32)


def walker_band(power: np.ndarray, half_width: int) -> np.ndarray:
    """The walker's range bins per frame: the strongest bin, median-filtered over 5 frames.

    Args:
        power: (F, R) range-time map, clutter removed.
        half_width: bins kept either side of the track.

    Returns:
        (F, B) bin indices, B = 2·half_width + 1 (fewer if R is smaller), inside [0, R).
    """
    num_bins = power.shape[1]
    width = min(2 * half_width + 1, num_bins)
    track = ndimage.median_filter(power.argmax(axis=1), size=5, mode="nearest")
    first = np.clip(track - half_width, 0, num_bins - width)
    return first[:, None] + np.arange(width)


def micro_doppler(
    profiles: np.ndarray, window: int = 0, band: np.ndarray | None = None
) -> np.ndarray:
    """STFT over slow time per range bin and antenna, magnitudes summed over both.

    Each frame's C chirps are cut into C // L non-overlapping Hann-windowed segments of L chirps
    (L = `window`, 0 meaning C), so windows never straddle the idle gap between frames; one
    segment per frame gives the paper's 0.06 m/s resolution.

    Args:
        profiles: (F, C, A, R) complex range profiles, static clutter removed.
        window: L, chirps per STFT segment.
        band: (F, B) range bins to use in each frame (see `walker_band`); all R when None.

    Returns:
        (D, T) float32 merged spectrogram, D = L Doppler bins ordered by increasing approach
        speed (see `velocity_axis`), T = F·(C // L) time bins.
    """
    if band is not None:
        profiles = np.take_along_axis(profiles, band[:, None, None, :], axis=3)
    num_frames, num_chirps, num_rx, num_bins = profiles.shape
    length = window or num_chirps
    segments = num_chirps // length
    slow = profiles[:, : segments * length].reshape(num_frames * segments, length, num_rx, num_bins)
    spectrum = scipy.fft.fft(slow * hann(length)[:, None, None], axis=1)  # (T, L, A, B)
    merged = np.abs(spectrum).sum(axis=(2, 3), dtype=np.float32)  # (T, L)
    # Receding → positive slow-time frequency f; rows ascend in approach speed v = −λf/2.
    return np.fft.fftshift(merged, axes=1)[:, ::-1].T.copy()


def velocity_axis(radar: RadarConfig, window: int = 0) -> np.ndarray:
    """Approach speed of each spectrogram row, (D,) m/s."""
    length = window or radar.num_chirps
    frequency = np.fft.fftshift(np.fft.fftfreq(length, d=radar.chirp_period_s))
    return (-radar.wavelength_m / 2 * frequency)[::-1]


def decibel_scale(spectrograms: np.ndarray, dynamic_range_db: float) -> np.ndarray:
    """dB, clipped `dynamic_range_db` below each (..., D, T) spectrogram's peak, mapped to [0, 1]."""
    decibels = 20 * np.log10(np.maximum(spectrograms, np.finfo(np.float32).tiny))
    decibels -= decibels.max(axis=(-2, -1), keepdims=True)
    return ((np.clip(decibels, -dynamic_range_db, 0) + dynamic_range_db) / dynamic_range_db).astype(
        np.float32
    )


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) linear map: area average when shrinking (no aliasing), linear
    interpolation between pixel centres when enlarging. Rows sum to 1."""
    if size_out <= size_in:
        edges = np.linspace(0, size_in, size_out + 1)
        left, right = edges[:-1, None], edges[1:, None]
        pixels = np.arange(size_in)[None, :]
        overlap = np.clip(np.minimum(right, pixels + 1) - np.maximum(left, pixels), 0, None)
        return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    centres = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    below = np.floor(centres).astype(int)
    above = np.minimum(below + 1, size_in - 1)
    fraction = centres - below
    matrix = np.zeros((size_out, size_in), np.float32)
    np.add.at(matrix, (np.arange(size_out), below), 1 - fraction)
    np.add.at(matrix, (np.arange(size_out), above), fraction)
    return matrix


def to_images(spectrograms: np.ndarray, dynamic_range_db: float, size: int) -> np.ndarray:
    """`decibel_scale`, then resize to size × size (`resize_matrix` on each axis).

    Args:
        spectrograms: (..., D, T) non-negative magnitudes.

    Returns:
        (..., 3, size, size) float32 in [0, 1]; the three channels are one read-only view (the
        students are ImageNet-shaped CNNs).
    """
    scaled = decibel_scale(spectrograms, dynamic_range_db)
    rows, columns = resize_matrix(scaled.shape[-2], size), resize_matrix(scaled.shape[-1], size)
    resized = rows @ scaled @ columns.T  # (..., H, H)
    return np.broadcast_to(resized[..., None, :, :], (*resized.shape[:-2], 3, size, size))


def gait_windows(spectrogram: np.ndarray, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a walk's (D, T) spectrogram into overlapping (W, D, length) windows.

    Returns:
        The windows (a strided view) and each window's first time bin, (W,).

    Raises:
        CaptureError: the walk is shorter than one window.
    """
    if spectrogram.shape[-1] < length:
        raise CaptureError(
            f"a walk of {spectrogram.shape[-1]} time bins is shorter than one {length}-bin gait window"
        )
    views = np.lib.stride_tricks.sliding_window_view(spectrogram, length, axis=-1)  # (D, T', L)
    starts = np.arange(0, views.shape[1], hop)
    return views[:, starts].transpose(1, 0, 2), starts


def walk_spectrogram(profiles: np.ndarray, radar: RadarConfig, dsp: DSPConfig) -> np.ndarray:
    """Range profiles of one walk (F, C, A, R) → its merged micro-Doppler spectrogram (D, T).

    Raises:
        CaptureError: the profiles hold NaN or infinite values.
    """
    if not np.isfinite(profiles).all():
        raise CaptureError("range profiles hold NaN or infinite values")
    profiles = remove_static_clutter(profiles)
    band = None
    if dsp.track_half_width_m > 0:
        half_width = int(np.ceil(dsp.track_half_width_m / radar.range_resolution_m))
        band = walker_band(range_time_map(profiles), half_width)
    return micro_doppler(profiles, dsp.doppler_window, band)


def spread(count: int, most: int) -> np.ndarray:
    """Indices of at most `most` of `count` windows, evenly spread over the walk (0: all)."""
    if most <= 0 or count <= most:
        return np.arange(count)
    return np.unique(np.rint(np.linspace(0, count - 1, most)).astype(np.int64))


def spectrogram_windows(
    spectrogram: np.ndarray, radar: RadarConfig, dsp: DSPConfig, most: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A walk's (D, T) spectrogram → gait images and their centre times; with `most`, only that
    many windows, evenly spread (`spread`), are imaged (the rest cost nothing).

    Returns:
        (W, 3, H, H) float32 images in [0, 1] and (W,) window centre times, s from the first chirp.
    """
    per_frame = columns_per_frame(radar, dsp)
    windows, starts = gait_windows(
        spectrogram, dsp.window_frames * per_frame, dsp.hop_frames * per_frame
    )
    if 0 < most < len(windows):  # (all windows: the strided view, as datasets are built)
        chosen = spread(len(windows), most)
        windows, starts = windows[chosen], starts[chosen]
    centres = (starts / per_frame + dsp.window_frames / 2) * radar.frame_period_s
    return to_images(windows, dsp.dynamic_range_db, dsp.image_size), centres
