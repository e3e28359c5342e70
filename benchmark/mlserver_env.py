"""MLServer with its scikit-learn runtime, from PyPI, in a virtual environment of its own (.cache/bench)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

# uvloop is held below 0.22: with 0.22 MLServer 1.7.1's inference workers die at start-up ("There is no current
# event loop in thread 'MainThread'", SeldonIO/MLServer#2286).
REQUIREMENTS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]


class SetupError(Exception):
    """The MLServer environment could not be made."""


def ensure(folder: Path, pins: dict[str, str]) -> Path:
    """The `mlserver` command of a venv in `folder` with MLServer and the same scikit-learn/numpy as ours."""
    wanted = [*REQUIREMENTS, f"scikit-learn=={pins['scikit-learn']}", f"numpy=={pins['numpy']}"]
    stamp = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    command = folder / "bin" / "mlserver"
    if (folder / ".stamp").exists() and (folder / ".stamp").read_text() == stamp and command.exists():
        return command
    log = folder.parent / "mlserver-pip.log"
    folder.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(folder)],
             # --no-compile: pip's bytecode for every module took about half its CPU; Python compiles what it imports
             [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", *wanted]]
    with log.open("w") as output:
        for step in steps:
            if subprocess.run(step, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                raise SetupError(f"`{' '.join(step[:4])} ...` failed; see {log}")
    (folder / ".stamp").write_text(stamp)
    return command
