"""Build the model-serving image, print its size report and apply the size gate. `--help` for options."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagebuild.cli import main  # noqa: E402  (the repository root goes on sys.path first)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
