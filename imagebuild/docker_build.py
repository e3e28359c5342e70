"""Builds through the Docker SDK (classic builder: no BuildKit) from a minimal, reproducible context."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections import deque
from pathlib import Path
from typing import Any

from . import ROOT, BuildError
from .progress import say

CONTEXT_FILES = ("Dockerfile.builder", "Dockerfile.runtime", "build/trim.py", "build/compile_imported.py")
CONTEXT_TREES = ("service", "models/diabetes")
# Untagged images with these labels are this project's superseded builds: the builder and the `app` stage
# (Dockerfile.builder) and earlier runtime images (Dockerfile.runtime).
SUPERSEDED_LABELS = ("sklearn-model-service.intermediate=true", "org.opencontainers.image.title=sklearn-model-service")


def _add(tar: tarfile.TarFile, source: Path, name: str) -> None:
    info = tar.gettarinfo(str(source), arcname=name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    with source.open("rb") as handle:
        tar.addfile(info, handle)


def context(wheelhouse: Path, requirements: Path = ROOT / "requirements.txt") -> io.BytesIO:
    """Only what the Dockerfiles copy, with fixed mtimes and owners, so the layer cache keys on content."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add(tar, requirements, "requirements.txt")
        for name in CONTEXT_FILES:
            _add(tar, ROOT / name, name)
        for tree in CONTEXT_TREES:
            for path in sorted((ROOT / tree).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    _add(tar, path, path.relative_to(ROOT).as_posix())
        for path in sorted(wheelhouse.iterdir()):
            if path.name.endswith((".whl", ".tar.gz", ".zip")):
                _add(tar, path, f"wheelhouse/{path.name}")
    buffer.seek(0)
    return buffer


def build(client: Any, buffer: io.BytesIO, dockerfile: str, tag: str, buildargs: dict[str, str]) -> str:
    """Build one Dockerfile with no network for RUN steps; returns the image id, streams progress to stderr."""
    buffer.seek(0)
    image_id = None
    recent: deque[str] = deque(maxlen=15)
    for chunk in client.api.build(fileobj=buffer, custom_context=True, dockerfile=dockerfile, tag=tag,
                                  buildargs=buildargs, rm=True, forcerm=True, network_mode="none", decode=True):
        if "error" in chunk:
            for line in recent:
                print(f"  | {line}", file=sys.stderr)
            detail = chunk.get("errorDetail", {}).get("message", chunk["error"]).strip()
            raise BuildError(f"docker build of {dockerfile} failed: {detail.splitlines()[-1] if detail else '?'}")
        line = chunk.get("stream", "").rstrip()
        if line:
            recent.append(line)
        if line.startswith("Step ") or line.startswith("trim:"):
            say(f"{dockerfile}: {line}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    if image_id is None:
        raise BuildError(f"docker build of {dockerfile} reported no image id")
    return image_id


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def revision() -> str:
    """Short commit, marked -dirty when the work tree differs from it."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def created() -> str:
    """The commit's time, so the same commit labels its image the same way."""
    return git("log", "-1", "--format=%cI") or "1970-01-01T00:00:00Z"
