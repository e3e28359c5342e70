"""Build, report, gate and publish the model-serving image (`python scripts/build.py`)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """A failure the user can act on: the message is one line with context and a hint."""


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader never sees half of it; missing parent folders are created."""
    import os
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
