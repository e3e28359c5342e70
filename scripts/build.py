"""Build the model-serving image, print its size report and apply the size gate.
`--help` for options; the same as `sms-build` (pyproject.toml).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's imagebuild, installed or not
from imagebuild.cli import main  # after the path it is found on

if __name__ == "__main__":
    sys.exit(main())
