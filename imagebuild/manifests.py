"""deploy/'s Kubernetes and KServe manifests with the image pinned to what was pushed and verified.

The committed manifests name a placeholder image; `scripts/build.py --push REPOSITORY --manifests OUT` writes
them to OUT with `REPOSITORY@sha256:...` in its place, so what is deployed is what the build pulled back and ran.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import ROOT, BuildError

DEPLOY = ROOT / "deploy"
PLACEHOLDER = "registry.example/sklearn-model-service@sha256:" + "0" * 64
PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def render(pinned: str, out: Path, source: Path = DEPLOY) -> list[Path]:
    """Copy every manifest under `source` to `out` (same relative paths), the placeholder image replaced by
    `pinned`; returns the files written."""
    if not PINNED.match(pinned):
        raise BuildError(f"{pinned} is not REPOSITORY@sha256:<64 hex digits>")
    written = []
    for path in sorted(source.rglob("*.yaml")):
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8").replace(PLACEHOLDER, pinned), encoding="utf-8")
        written.append(target)
    return written
