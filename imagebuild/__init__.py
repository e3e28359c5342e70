"""Build, report, gate and publish the model-serving image (`python scripts/build.py`)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """A failure the user can act on: the message is one line with context and a hint."""
