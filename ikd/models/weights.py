"""Weights and checkpoints written whole and read back wherever `ikd.storage` reaches."""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from ikd.storage import Location, location


def write_torch(target: str | os.PathLike | Location, content: Any) -> None:
    """`torch.save` written whole (`Location.write_with`)."""
    location(target).write_with(lambda handle: torch.save(content, handle))


def read_torch(target: str | os.PathLike | Location, *, weights_only: bool = True) -> Any:
    """`torch.load` onto the CPU of a file anywhere `location` reaches."""
    target = location(target)
    source = target.path if target.is_local else io.BytesIO(target.read_bytes())
    return torch.load(source, map_location="cpu", weights_only=weights_only)
