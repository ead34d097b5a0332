"""Small file helpers every layer uses: JSON read/written whole and atomically, file digests.

Imports nothing from ikd (the ground floor), so the config, the data layer and training can all
use it without importing each other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or None when it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: str | os.PathLike, content: Any) -> None:
    """Write JSON atomically (a temporary file, then a rename): a killed writer leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


def sha256_file(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a file's SHA-256 (checkpoint provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
