"""The Python environment a model was trained in: which distribution provides each importable top-level module,
and which versions are installed. importlib.metadata answers both, run in that environment's interpreter.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import BuildError
from .requirements import normalize

QUERY = """
import importlib.metadata as metadata, json, platform
print(json.dumps({
    "python": platform.python_version(),
    "modules": metadata.packages_distributions(),
    "versions": {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]},
}))
"""


# Which distribution a module belongs to when its name is not a top-level package: a compiled module may register
# itself under a short name (scikit-learn 1.8's Cython losses appear in pickles as `_loss`). Import what the model
# references, then find the installed package whose folder holds each module's file.
OWNERS = """
import importlib, importlib.metadata as metadata, json, os, sys
imports, names = json.loads(sys.argv[1])
for name in imports:
    try:
        importlib.import_module(name)
    except Exception:
        pass
tops = metadata.packages_distributions()
owners = {}
for name in names:
    path = os.path.realpath(getattr(sys.modules.get(name), "__file__", None) or "/")
    for entry in sorted({os.path.realpath(entry or ".") for entry in sys.path}, key=len, reverse=True):
        if path.startswith(entry + os.sep):
            top = os.path.relpath(path, entry).split(os.sep)[0].split(".")[0]
            owners[name] = tops.get(top, [])
            break
print(json.dumps(owners))
"""


@dataclass(frozen=True)
class Environment:
    """Facts about one interpreter's installed distributions (names normalized as PEP 503 does)."""

    python: str  # the interpreter's path
    python_version: str
    modules: dict[str, list[str]]  # top-level import name -> distributions providing it
    versions: dict[str, str]  # distribution -> installed version

    def distributions_of(self, module: str) -> list[str]:
        return sorted({normalize(name) for name in self.modules.get(module, [])})

    def version_of(self, distribution: str) -> str | None:
        return self.versions.get(normalize(distribution))

    def owners(self, imports: list[str], names: list[str]) -> dict[str, list[str]]:
        """Distributions providing each of `names` once `imports` are imported (see OWNERS)."""
        try:
            result = subprocess.run([self.python, "-c", OWNERS, json.dumps([imports, names])], capture_output=True,
                                    text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if result.returncode != 0:
            return {}
        return {name: sorted({normalize(d) for d in found}) for name, found in json.loads(result.stdout).items()}


def environment(python: str | Path | None = None) -> Environment:
    """Query `python` (default: the interpreter running this build)."""
    executable = str(python or sys.executable)
    try:
        result = subprocess.run([executable, "-c", QUERY], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise BuildError(f"--python {executable}: cannot run it ({exc.strerror or exc}); give the path of the "
                         f"Python the model was trained with, e.g. ~/venvs/train/bin/python") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"--python {executable}: cannot list its installed packages ({last}); it must be "
                         f"Python 3.10 or newer")
    facts = json.loads(result.stdout)
    return Environment(python=executable, python_version=facts["python"], modules=facts["modules"],
                       versions={normalize(name): version for name, version in facts["versions"].items()})
