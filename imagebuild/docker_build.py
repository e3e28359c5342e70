"""Builds through the Docker SDK (classic builder: no BuildKit) from a minimal, reproducible context."""
from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import tarfile
import time
from collections import deque
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import docker.errors
from docker.utils import parse_repository_tag

from . import ROOT, BuildError
from .model_input import ModelSource, code_files, head_of_sample
from .platforms import Platform
from .progress import say

# What each Dockerfile copies: the builder's context carries the wheels, the runtime's the service and the bundle,
# so a rebuild after a change to service/ does not send the wheelhouse to the engine again.
BUILDER_FILES = ("Dockerfile.builder", "build/trim.py", "build/runtime_trim.py", "build/runtime-trim.txt")
RUNTIME_FILES = ("Dockerfile.runtime", "build/compile_imported.py", "build/runtime_trim.py",
                 "build/runtime-trim.txt", "build/prune.py")
RUNTIME_TREES = ("service", "modelcard", "derivecard")  # derivecard: the app stage only
# The label every image of one build carries (the builder, the runtime build's `app` stage, the runtime itself),
# with the image reference as its value: pruning keys on it, so it never touches another build's images.
BUILD_LABEL = "sklearn-model-service.build"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _add(tar: tarfile.TarFile, source: Path, name: str) -> None:
    info = tar.gettarinfo(str(source), arcname=name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
    with source.open("rb") as handle:
        tar.addfile(info, handle)


def _add_bytes(tar: tarfile.TarFile, data: bytes, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_folder(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _tar(fill: Callable[[tarfile.TarFile], None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        fill(tar)
    buffer.seek(0)
    return buffer


def builder_context(wheelhouse: Path, requirements: Path) -> io.BytesIO:
    """What Dockerfile.builder copies, with fixed mtimes and owners, so the layer cache keys on content: the
    requirements, the wheelhouse, the trim scripts."""
    def fill(tar: tarfile.TarFile) -> None:
        _add(tar, requirements, "requirements.txt")
        for name in BUILDER_FILES:
            _add(tar, ROOT / name, name)
        for path in sorted(wheelhouse.iterdir()):
            if path.name.endswith((".whl", ".tar.gz", ".zip")):
                _add(tar, path, f"wheelhouse/{path.name}")
    return _tar(fill)


CROSS_FILES = ("build/Dockerfile.cross", "build/trim.py", "build/runtime_trim.py", "build/runtime-trim.txt")


def cross_context(wheelhouse: Path, requirements: Path, sysconfigdata: tuple[str, bytes]) -> io.BytesIO:
    """What build/Dockerfile.cross copies, likewise: the requirements, another platform's wheelhouse, the trim
    scripts and that platform's _sysconfigdata module (sysconfig/NAME)."""
    def fill(tar: tarfile.TarFile) -> None:
        _add(tar, requirements, "requirements.txt")
        for name in CROSS_FILES:
            _add(tar, ROOT / name, name)
        _add_folder(tar, "sysconfig")
        _add_bytes(tar, sysconfigdata[1], f"sysconfig/{sysconfigdata[0]}")
        for path in sorted(wheelhouse.iterdir()):
            if path.name.endswith(".whl"):
                _add(tar, path, f"wheelhouse/{path.name}")
    return _tar(fill)


def runtime_context(source: ModelSource, sbom: str) -> io.BytesIO:
    """What Dockerfile.runtime copies, likewise: bundle/ (the model file, and its card.json if hand-written),
    sample/ (sample.csv, if given), code/ (the user's modules), sbom/ (the SBOM), service/, modelcard/,
    derivecard/ and the build scripts."""
    def fill(tar: tarfile.TarFile) -> None:
        for name in RUNTIME_FILES:
            _add(tar, ROOT / name, name)
        for tree in RUNTIME_TREES:
            for path in sorted((ROOT / tree).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    _add(tar, path, path.relative_to(ROOT).as_posix())
        for folder in ("bundle", "sample", "code", "sbom"):
            _add_folder(tar, folder)
        _add_bytes(tar, sbom.encode(), "sbom/image.cdx.json")
        _add(tar, source.artifact, f"bundle/{source.artifact.name}")
        if source.card is not None:
            _add(tar, source.card, "bundle/card.json")
        if source.sample is not None:
            _add_bytes(tar, head_of_sample(source.sample), "sample/sample.csv")
        for path, name in code_files(source):
            _add(tar, path, f"code/{name}")
    return _tar(fill)


def debug_context(dockerfile: str, busybox: Path, applets: list[str]) -> io.BytesIO:
    """What build/Dockerfile.debug copies, likewise: busybox/busybox and a link to it for each applet."""
    def fill(tar: tarfile.TarFile) -> None:
        _add(tar, ROOT / dockerfile, dockerfile)
        _add(tar, busybox, "busybox/busybox")
        for applet in applets:
            info = tarfile.TarInfo(f"busybox/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    return _tar(fill)


def split_reference(reference: str) -> tuple[str, str]:
    """REPOSITORY and TAG of an image reference, the Docker SDK's way (a registry's port is not a tag; no tag
    is `latest`)."""
    repository, tag = parse_repository_tag(reference)
    return repository, tag or "latest"


def builder_reference(reference: str) -> str:
    """The builder's tag for an image reference: REPOSITORY-builder:TAG, so each build keeps its own."""
    repository, tag = split_reference(reference)
    return f"{repository}-builder:{tag}"


def cross_reference(reference: str) -> str:
    """The tag of another platform's venv and standard library (build/Dockerfile.cross) for its image
    `reference`: REPOSITORY-builder:TAG-venv, kept beside the builder so the next build reuses it."""
    return f"{builder_reference(reference)}-venv"


def cache_reference(reference: str) -> str:
    """The tag of the image as Dockerfile.runtime built it, before imagebuild/reproducible.py rewrote it:
    REPOSITORY-cache:TAG, kept so the next build of `reference` starts from its layers."""
    repository, tag = split_reference(reference)
    return f"{repository}-cache:{tag}"


def stage_reference(reference: str) -> str:
    """The tag of Dockerfile.runtime's `app` stage for `reference` (the card derived, the code compiled):
    REPOSITORY-cache:TAG-app. Untagged, it went with the superseded images at the end of every build, so the next
    build of the same model derived its card again."""
    repository, tag = split_reference(reference)
    return f"{repository}-cache:{tag}-app"


@contextlib.contextmanager
def leaving_nothing(client: Any, reference: str, remove: list[str]) -> Iterator[None]:
    """A build of `reference`: on failure, the untagged images its steps made are removed (a failed step leaves
    those of the steps before it); on the way out either way, the images `remove` names (--clean)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(docker.errors.APIError):
            prune_superseded(client, reference)
        raise
    finally:
        untag(client, remove)
        if remove:
            prune_superseded(client, reference)


def untag(client: Any, references: list[str]) -> None:
    """Remove each reference's tag (and its image, when no other tag or image needs it); absent ones are fine."""
    for name in references:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name)


PRUNE_WAIT_SECONDS = 60.0  # how long a build waits for another build's prune on the same engine


def prune_superseded(client: Any, reference: str, wait: float = PRUNE_WAIT_SECONDS,
                     pause: Callable[[float], None] = time.sleep) -> int:
    """Remove the untagged images earlier builds of `reference` left (their builder, `app` stage, runtime);
    returns the bytes reclaimed. Images of other references, tagged or not, are not touched."""
    return prune_dangling(client, f"{BUILD_LABEL}={reference}", f"the superseded images of {reference}", wait, pause)


def prune_dangling(client: Any, label: str, what: str, wait: float = PRUNE_WAIT_SECONDS,
                   pause: Callable[[float], None] = time.sleep) -> int:
    """Remove the untagged images carrying `label` (`name=value`); the bytes reclaimed.

    The engine runs one prune at a time and answers 409 ("a prune operation is already running") to another
    meanwhile, as when two builds on one engine finish at once: retried for up to `wait` seconds, then `what` is
    left to the next build, with a line saying so (only disk is lost)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pruned = client.images.prune(filters={"dangling": True, "label": label})
            return int(pruned.get("SpaceReclaimed") or 0)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            if time.monotonic() >= deadline:
                say(f"prune: another prune kept the engine busy for {wait:.0f} s; {what} are left to the next build")
                return 0
        pause(0.5)


def derive_arguments(source: ModelSource) -> str:
    """The arguments of `python -m derivecard` in Dockerfile.runtime's app stage."""
    arguments = ["--sample /src/sample/sample.csv"] if source.sample is not None else []
    arguments += [f"--trust {name}" for name in source.trust]
    return " ".join(arguments)


def build(client: Any, buffer: io.BytesIO, dockerfile: str, tag: str, buildargs: dict[str, str],
          labels: dict[str, str], platform: Platform, target: str | None = None) -> str:
    """Build one Dockerfile (up to its stage `target`, if given) for `platform` with no network for RUN steps
    (under emulation when the engine runs another platform); returns the image id, streams progress to stderr.

    Lines a step prints as `error: ...` (the card derivation's) become the BuildError's lines; `card:`, `trim:`
    and `prune:` lines are progress."""
    buffer.seek(0)
    image_id = None
    recent: deque[str] = deque(maxlen=15)
    errors: list[str] = []
    for chunk in client.api.build(fileobj=buffer, custom_context=True, dockerfile=dockerfile, tag=tag,
                                  buildargs=buildargs, labels=labels, rm=True, forcerm=True, network_mode="none",
                                  platform=platform.name, target=target, decode=True):
        if "error" in chunk:
            if errors:
                raise BuildError("\n".join(errors))
            for line in recent:
                print(f"  | {line}", file=sys.stderr)
            detail = chunk.get("errorDetail", {}).get("message", chunk["error"]).strip()
            raise BuildError(f"docker build of {dockerfile} failed: {detail.splitlines()[-1] if detail else '?'}")
        for line in ANSI.sub("", chunk.get("stream", "")).splitlines():  # a step's stderr comes coloured
            line = line.rstrip()
            if not line:
                continue
            recent.append(line)
            if line.startswith("error: "):
                errors.append(line.removeprefix("error: "))
            elif line.startswith(("Step ", "trim:", "card:", "prune:")):
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


def source_state(url: str) -> dict[str, Any]:
    """The source as provenance names it: its URL, the full commit, and whether the work tree differs from it."""
    return {"url": url, "commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def commit_time() -> str:
    """The commit's time in seconds since the epoch ("" outside a git checkout): SOURCE_DATE_EPOCH's default."""
    return git("log", "-1", "--format=%ct")
