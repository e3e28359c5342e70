"""Virtual environments the tests need beside the project's own (.cache/test-venvs/<name>): another
scikit-learn to train with, and the clients users point at the image, installed from PyPI as shipped."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from .locks import exclusive

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / ".cache" / "test-venvs"


def venv(name: str, requirements: list[str]) -> Path:
    """The Python of a venv holding `requirements`; made once, again when the requirements change. Two test
    processes asking for the same one take turns: the second finds it made. pip compiles nothing
    (`--no-compile`: it halved pip's CPU time for the round-two venv, 17.9 s against 9.0 s, measured); Python
    compiles what is imported."""
    folder = FOLDER / name
    python = folder / "bin" / "python"
    stamp = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    with exclusive(FOLDER / f"{name}.lock"):
        if python.exists() and (folder / ".stamp").is_file() and (folder / ".stamp").read_text() == stamp:
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 "--no-compile", *requirements], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed:\n{result.stderr[-3000:]}")
        (folder / ".stamp").write_text(stamp)
    return python


def run(python: Path, script: str, *arguments: str, timeout: float = 300) -> str:
    """Run `script` with that venv's Python; its stdout, or a failure with its stderr."""
    result = subprocess.run([str(python), "-c", script, *arguments], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
