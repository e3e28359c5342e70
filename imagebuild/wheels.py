"""The wheelhouse: every locked requirement as a wheel for the image's platform, hash-checked by pip."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from . import ROOT, BuildError
from .progress import say

CACHE = ROOT / ".cache" / "wheelhouse"


# glibc 2.28 wheels run on the runtime's glibc (Debian 13: 2.41); pip also accepts every older manylinux tag.
PLATFORM = "manylinux_2_28_x86_64"
PYTHON_VERSION = "3.13"


def wheelhouse(requirements: Path) -> Path:
    """Download (once per requirements.txt) the image's wheels into a cache folder; returns the folder."""
    key = hashlib.sha256(requirements.read_bytes() + PLATFORM.encode()).hexdigest()[:12]
    target = CACHE / key
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    say(f"downloading wheels for cp{PYTHON_VERSION.replace('.', '')} {PLATFORM}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--platform", PLATFORM, "--python-version", PYTHON_VERSION, "--implementation", "cp",
         "--require-hashes", "--disable-pip-version-check", "--dest", str(target), "-r", str(requirements)],
        capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        raise BuildError(f"wheel download failed: {(errors or ['see pip output'])[0]} (every requirement needs "
                         f"a wheel for {PLATFORM} and Python {PYTHON_VERSION}; pick a version that "
                         f"has one, then `python scripts/build.py --update-requirements`)")
    done.write_text("ok\n")
    return target
