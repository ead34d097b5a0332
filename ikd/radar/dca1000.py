"""TI DCA1000 raw captures of an IWR1843 (complex baseband, 2 LVDS lanes).

File layout: little-endian int16 words in groups of four, ``I0 I1 Q0 Q1 I2 I3 Q2 Q3 …`` (two
consecutive complex samples per group), ordered chirp-major, then RX, then sample — that is, the
flattened (F frames, C chirps, A rx, S samples) cube, 4 bytes per complex sample.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ikd.errors import CaptureError

BYTES_PER_SAMPLE = 4  # complex int16: I and Q words


def expected_bytes(num_frames: int, num_chirps: int, num_rx: int, num_samples: int) -> int:
    return num_frames * num_chirps * num_rx * num_samples * BYTES_PER_SAMPLE


def read_bin(
    path: str | os.PathLike, num_frames: int, num_chirps: int, num_rx: int, num_samples: int
) -> np.ndarray:
    """Read a DCA1000 capture.

    Returns:
        (F, C, A, S) complex64 ADC counts.

    Raises:
        CaptureError: the file is missing, truncated or holds another number of frames.
    """
    path = Path(path)
    _check_even(num_samples, path)
    expected = expected_bytes(num_frames, num_chirps, num_rx, num_samples)
    try:
        actual = path.stat().st_size
    except OSError as error:
        raise CaptureError(f"{path}: cannot read capture ({error.strerror})") from None
    if actual != expected:
        frame_bytes = expected // num_frames
        raise CaptureError(
            f"{path}: expected {expected} bytes ({num_frames} frames × {num_chirps} chirps × "
            f"{num_rx} rx × {num_samples} samples × {BYTES_PER_SAMPLE} B), found {actual} bytes "
            f"({actual / frame_bytes:.2f} frames{'; truncated' if actual < expected else ''})"
        )
    words = np.fromfile(path, dtype="<i2").reshape(-1, 4).astype(np.float32)
    samples = np.empty((words.shape[0], 2), dtype=np.complex64)
    samples.real, samples.imag = words[:, :2], words[:, 2:]
    return samples.reshape(num_frames, num_chirps, num_rx, num_samples)


def write_bin(path: str | os.PathLike, cube: np.ndarray) -> None:
    """Write an integer-valued (F, C, A, S) complex cube in the DCA1000 layout.

    Raises:
        CaptureError: the cube holds NaN/inf, non-integer or out-of-int16 values.
    """
    path = Path(path)
    _check_even(cube.shape[-1], path)
    if not np.isfinite(cube).all():
        raise CaptureError(f"{path}: refusing to write a capture holding NaN or infinite samples")
    parts = np.stack([cube.real, cube.imag], axis=-1).reshape(-1, 2, 2)  # (pairs, sample, I/Q)
    if np.any(parts != np.round(parts)) or np.abs(parts).max(initial=0) > 32767:
        raise CaptureError(f"{path}: samples must be int16 ADC counts (use `quantize` first)")
    words = parts.transpose(0, 2, 1).astype("<i2")  # (pairs, I/Q, sample): I0 I1 Q0 Q1
    tmp = path.with_suffix(path.suffix + ".part")
    words.tofile(tmp)
    tmp.replace(path)


def quantize(cube: np.ndarray, full_scale: float) -> np.ndarray:
    """Map noise-σ units to int16 ADC counts, `full_scale` → 32767 (clipping beyond): complex64."""
    scale = np.float32(32767 / full_scale)
    real = np.clip(np.round(cube.real * scale), -32767, 32767)
    imag = np.clip(np.round(cube.imag * scale), -32767, 32767)
    return (real + 1j * imag).astype(np.complex64)


def _check_even(num_samples: int, path: Path) -> None:
    if num_samples % 2:
        raise CaptureError(
            f"{path}: 2-lane DCA1000 data needs an even number of samples, got {num_samples}"
        )
