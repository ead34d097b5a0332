"""Micro-Doppler DSP: ADC cube → range profiles → clutter removal → STFT → gait images.

Pure, vectorised numpy/scipy (DESIGN.md §2). Shapes: F frames, C chirps per frame, A receive
antennas, S ADC samples per chirp, R kept range bins, D Doppler bins, T spectrogram time bins,
W gait windows, H image side. Velocities are radial speeds *toward* the radar (approaching > 0,
receding < 0), m/s.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from ikd.config import Config, DSPConfig, RadarConfig


def hann(length: int) -> np.ndarray:
    """Periodic Hann window ½ − ½·cos(2πn/N), (N,) float32 (the window the fast path assumes)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


def range_band(radar: RadarConfig, dsp: DSPConfig) -> slice:
    """Range-FFT bins [first, stop) covering the walker band [range_min_m, range_max_m]."""
    resolution = radar.range_resolution_m
    first = max(int(np.floor(dsp.range_min_m / resolution)), 0)
    stop = min(int(np.ceil(dsp.range_max_m / resolution)) + 1, radar.num_samples)
    return slice(first, stop)


def range_fft(cube: np.ndarray, bins: slice) -> np.ndarray:
    """Hann-windowed FFT over fast time, kept bins only.

    Args:
        cube: (F, C, A, S) complex ADC samples.
        bins: range bins to keep (see `range_band`); bin k is at k·c·fs / (2·slope·S) m.

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


def micro_doppler(profiles: np.ndarray, window: int = 0) -> np.ndarray:
    """STFT over slow time per range bin and antenna, magnitudes summed over both.

    Each frame's C chirps are cut into C // L non-overlapping Hann-windowed segments of L chirps
    (L = `window`, 0 meaning C), so windows never straddle the idle gap between frames; one
    segment per frame gives the paper's 0.06 m/s resolution.

    Args:
        profiles: (F, C, A, R) complex range profiles, static clutter removed.
        window: L, chirps per STFT segment.

    Returns:
        (D, T) float32 merged spectrogram, D = L Doppler bins ordered by increasing approach
        speed (see `velocity_axis`), T = F·(C // L) time bins.
    """
    num_frames, num_chirps, num_rx, num_bins = profiles.shape
    length = window or num_chirps
    segments = num_chirps // length
    slow = profiles[:, : segments * length].reshape(num_frames * segments, length, num_rx, num_bins)
    spectrum = np.fft.fft(slow * hann(length)[:, None, None], axis=1)  # (T, L, A, R)
    merged = np.abs(spectrum).sum(axis=(2, 3), dtype=np.float32)  # (T, L)
    # Slow-time frequency f = 2·(dR/dt)/λ is positive when receding: reverse so rows ascend
    # in approach speed v = −λf/2.
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


def to_images(spectrograms: np.ndarray, dynamic_range_db: float, size: int) -> np.ndarray:
    """`decibel_scale`, then resize to size × size.

    Args:
        spectrograms: (..., D, T) non-negative magnitudes.

    Returns:
        (..., 3, size, size) float32 in [0, 1]; the three channels are one read-only view (the
        students are ImageNet-shaped CNNs).
    """
    scaled = decibel_scale(spectrograms, dynamic_range_db)
    zoom = (1,) * (scaled.ndim - 2) + (size / scaled.shape[-2], size / scaled.shape[-1])
    resized = np.clip(ndimage.zoom(scaled, zoom, order=1, mode="nearest", grid_mode=True), 0, 1)
    return np.broadcast_to(resized[..., None, :, :], (*resized.shape[:-2], 3, size, size))


def gait_windows(spectrogram: np.ndarray, length: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a walk's (D, T) spectrogram into overlapping (W, D, length) windows.

    Returns:
        The windows (a strided view) and each window's first time bin, (W,).
    """
    if spectrogram.shape[-1] < length:
        raise ValueError(
            f"a walk of {spectrogram.shape[-1]} time bins is shorter than one {length}-bin window"
        )
    views = np.lib.stride_tricks.sliding_window_view(spectrogram, length, axis=-1)  # (D, T', L)
    starts = np.arange(0, views.shape[1], hop)
    return views[:, starts].transpose(1, 0, 2), starts


def walk_spectrogram(profiles: np.ndarray, config: Config) -> np.ndarray:
    """Range profiles of one walk (F, C, A, R) → its merged micro-Doppler spectrogram (D, T)."""
    if not np.isfinite(profiles).all():
        raise ValueError("range profiles hold NaN or infinite values")
    return micro_doppler(remove_static_clutter(profiles), config.dsp.doppler_window)


def spectrogram_windows(spectrogram: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """A walk's (D, T) spectrogram → gait images and their centre times.

    Returns:
        (W, 3, H, H) float32 images in [0, 1] and (W,) window centre times, s from the first chirp.
    """
    radar, dsp = config.radar, config.dsp
    per_frame = radar.num_chirps // (dsp.doppler_window or radar.num_chirps)
    windows, starts = gait_windows(
        spectrogram, dsp.window_frames * per_frame, dsp.hop_frames * per_frame
    )
    centres = (starts / per_frame + dsp.window_frames / 2) * radar.frame_period_s
    return to_images(windows, dsp.dynamic_range_db, dsp.image_size), centres
