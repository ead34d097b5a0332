"""Stage 1 of the dataset build: pair each gait window with the face frame at its centre time
(synthetic or real webcam). The data layer joins the radar's windows (ikd/radar/) with the faces
(ikd/face/), so neither of those imports the other.

Batch functions take and return ``dict[str, np.ndarray]`` rows as produced by
`ikd.radar.captures.windows_to_batch` and add a `face` column of (B, 3, S, S) uint8 crops. A
window whose frame shows no face, or whose frame cannot be read, gets an `error` naming the frame
and is dropped by the pipeline (and counted in the manifest).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ikd.config import Config
from ikd.data import schema
from ikd.face.synthetic import walk_frame
from ikd.radar.captures import walk_windows_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def synthetic_faces_batch(batch: dict[str, np.ndarray], *, config: Config) -> dict[str, np.ndarray]:
    """Render the webcam frame nearest each window's centre time (`face.frame_rate_hz`): the frame
    `ikd data simulate` exports for that time (`walk_frame`), as the aligned face crop."""
    size, seed, rate = config.face.image_size, config.synthetic.seed, config.face.frame_rate_hz
    faces = np.zeros((len(batch[schema.IDENTITY]), 3, size, size), np.uint8)
    errors = batch[schema.ERROR].copy()
    for row, (identity, walk, time_s) in enumerate(
        zip(batch[schema.IDENTITY], batch[schema.WALK], batch[schema.CENTRE_TIME], strict=True)
    ):
        if errors[row]:
            continue
        frame = round(time_s * rate)
        image = walk_frame(seed, int(identity), int(walk), frame, rate, crop_size=size)
        if image is None:
            errors[row] = (
                f"synthetic identity {identity} walk {walk}: no face in webcam frame {frame}"
            )
        else:
            faces[row] = image
    return {**batch, schema.FACE: faces, schema.ERROR: errors}


def synthetic_pairs_batch(batch: dict[str, np.ndarray], *, config: Config) -> dict[str, np.ndarray]:
    """Synthetic walks → gait windows with their faces, in one task (no intermediate copy)."""
    return synthetic_faces_batch(walk_windows_batch(batch, config=config), config=config)


class RealFaces:
    """MTCNN (facenet-pytorch, weights shipped in its wheel) on real webcam frames: a callable
    class so Ray Data loads the detector once per actor.

    Args:
        config: gives the crop size.
        frames: (identity, walk) → {"folder": frames folder, "frame_rate_hz", "frame_offset_s"}
            (the webcam time of the radar's first chirp); images in the folder, sorted by name,
            are frames 0, 1, …
    """

    def __init__(self, config: Config, frames: dict[tuple[int, int], dict[str, Any]]) -> None:
        from facenet_pytorch import MTCNN

        torch.set_num_threads(1)
        self.size = config.face.image_size
        self.frames = frames
        self.detector = MTCNN(image_size=self.size, margin=0, post_process=False, device="cpu")
        self._listing: dict[str, list[Path]] = {}

    def crop(self, image: Any) -> np.ndarray | None:
        """Detect and align the largest face of a PIL image: (3, S, S) uint8, or None."""
        face = self.detector(image)
        if face is None:
            return None
        return face.clamp(0, 255).round().to(torch.uint8).numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        faces = np.zeros((len(batch[schema.IDENTITY]), 3, self.size, self.size), np.uint8)
        errors = batch[schema.ERROR].copy()
        for row, (identity, walk, time_s) in enumerate(
            zip(batch[schema.IDENTITY], batch[schema.WALK], batch[schema.CENTRE_TIME], strict=True)
        ):
            if errors[row]:
                continue
            info = self.frames.get((int(identity), int(walk)))
            if info is None:
                errors[row] = f"identity {identity} walk {walk}: the capture lists no face frames"
                continue
            listing = self._files(info["folder"])
            index = round((time_s - info.get("frame_offset_s", 0.0)) * info["frame_rate_hz"])
            if not 0 <= index < len(listing):
                errors[row] = (
                    f"{info['folder']}: no frame {index} for t = {time_s:.2f} s ({len(listing)} frames)"
                )
                continue
            try:
                with Image.open(listing[index]) as image:
                    crop = self.crop(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                errors[row] = f"{listing[index]}: unreadable frame ({error})"
                continue
            except (RuntimeError, ValueError) as error:  # MTCNN on a degenerate image
                errors[row] = f"{listing[index]}: face detection failed ({error})"
                continue
            if crop is None:
                errors[row] = f"{listing[index]}: no face found"
            else:
                faces[row] = crop
        return {**batch, schema.FACE: faces, schema.ERROR: errors}

    def _files(self, folder: str | os.PathLike) -> list[Path]:
        key = str(folder)
        if key not in self._listing:
            path = Path(folder)
            self._listing[key] = (
                sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if path.is_dir()
                else []
            )
        return self._listing[key]
