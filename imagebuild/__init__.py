"""Build, report, gate and publish the model-serving image (`python scripts/build.py`)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """A failure the user can act on: the message is one line with context and a hint."""


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file (text as UTF-8) so that a reader never sees half of it, and two writers never share a
    temporary file; missing parent folders are created."""
    import os
    import tempfile
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as output:
        output.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(temporary, path)
