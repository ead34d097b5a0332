"""The networks: gait students (students.py) and the frozen face teacher (teacher.py), and how
their weights are saved and loaded wherever `ikd.storage` reaches."""

import io
import os
from typing import Any

import torch

from ikd.storage import Location, location

EMBEDDING_DIM = 512  # FaceNet's (InceptionResnetV1) embedding width: p_t, and p_s projects to it


def write_torch(target: str | os.PathLike | Location, content: Any) -> None:
    """`torch.save` written whole (`Location.write_with`)."""
    location(target).write_with(lambda handle: torch.save(content, handle))


def read_torch(target: str | os.PathLike | Location, *, weights_only: bool = True) -> Any:
    """`torch.load` onto the CPU of a file anywhere `location` reaches."""
    target = location(target)
    source = target.path if target.is_local else io.BytesIO(target.read_bytes())
    return torch.load(source, map_location="cpu", weights_only=weights_only)
