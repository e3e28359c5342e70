"""Benchmark this image, the service from source, MLServer and the book-style app side by side. `--help`."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main  # noqa: E402  (the repository root goes on sys.path first)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
