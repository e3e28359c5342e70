"""The same commit gives the same image id: what `docker build` leaves varying is rewritten after the build.

The classic builder stamps the build's wall-clock time into the image config (`created`, each history entry),
records its build container and parent image, and gives every file a RUN step or COPY writes (and every folder
it touches) the time of the step. After the build, each layer the Dockerfile added is rewritten with every file
time at 0 (1970-01-01, as the build context's files already are) and owners by number only, in the engine's own
(sorted) order; the config gets SOURCE_DATE_EPOCH for its times and loses the build container, parent and engine
version; and the result is loaded back under the same tag. The base's layers are left byte for byte as they are.
The Dockerfiles stay the recipe.

File times are not clamped to SOURCE_DATE_EPOCH (BuildKit's way): a cached layer built before the commit would
keep its earlier times, and an unchanged layer would still change with every commit's epoch, so registries and
nodes would store and pull the whole image again for each commit. At 0, a layer's digest depends on its content
alone. (Imports do not look at times: the bytecode is hash-based.)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, UTC
from pathlib import Path
from typing import Any
from collections.abc import Callable

from . import ROOT, BuildError, archive, write_atomic

VARIABLE = "SOURCE_DATE_EPOCH"
# The classic builder names a COPY's source by a hash of its files' content and times: `COPY dir:<sha256> in /x`.
COPY_SOURCE = re.compile(r"\b(dir|file|multi):[0-9a-f]{64}")
HEALTHCHECK = re.compile(r"HEALTHCHECK &\{.*\}$")  # the classic builder's rendering of the instruction
BUILD_TRACES = ("container", "container_config", "docker_version")  # the build container, and the engine's version
PAX_TIMES = ("mtime", "atime", "ctime")
MEMO = ROOT / ".cache" / "normalized.json"  # "<built image id> <epoch> <version>" -> the normalized image's id
VERSION = 4  # bumped whenever an image is normalized differently
ORIGIN = {VARIABLE: "from the environment", "commit": "from the commit", "none": "not a git checkout"}
MEMO_SIZE = 50


@dataclass(frozen=True)
class Epoch:
    """SOURCE_DATE_EPOCH and where it came from."""

    seconds: int
    source: str  # "SOURCE_DATE_EPOCH" (the environment), "commit", or "none" (no git checkout: 0)

    def iso(self) -> str:
        return datetime.fromtimestamp(self.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_date_epoch(commit_time: str, environ: dict[str, str] | None = None) -> Epoch:
    """SOURCE_DATE_EPOCH from the environment if set, else the commit's time (`git log -1 --format=%ct`), else 0."""
    given = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if given:
        if not given.isdigit():
            raise BuildError(f"{VARIABLE}={given!r}: give whole seconds since 1970-01-01 UTC "
                             f"(e.g. `git log -1 --format=%ct`), or unset it to use the commit's time")
        return Epoch(int(given), VARIABLE)
    if not commit_time.isdigit():
        return Epoch(0, "none")  # not a git checkout: still reproducible, at 1970-01-01
    return Epoch(int(commit_time), "commit")


def canonical_step(created_by: str, config: dict[str, Any]) -> str:
    """A history line as no particular engine renders it: COPY sources without their time-dependent hash, and a
    HEALTHCHECK written from the config (Docker 25 added the start interval to its own rendering, "0s" when
    unset, so 20.10 and 26 wrote different lines for the same instruction)."""
    line = COPY_SOURCE.sub(r"\1", created_by)
    if HEALTHCHECK.search(line):
        line = HEALTHCHECK.sub("HEALTHCHECK " + json.dumps(config.get("config", {}).get("Healthcheck"),
                                                            sort_keys=True), line)
    return line


def container_config(config: dict[str, Any]) -> dict[str, Any]:
    """The image's run configuration without its empty fields: the classic store writes every field of Docker's
    container config (Hostname "", Tty false, Cmd null, ...), the containerd store only those set; and without
    the parent image the classic builder records in `Image`."""
    return {key: value for key, value in config.items() if value not in (None, False, "", [], {}) and key != "Image"}


def normalized_config(config: dict[str, Any], diff_ids: list[str], epoch: Epoch, base_steps: int) -> dict[str, Any]:
    """The image config without build-time traces: the image's time and its own steps' at the epoch (the base's
    first `base_steps` history entries keep theirs), no build container, parent or engine version, its own steps'
    history lines as `canonical_step` writes them, and the rewritten layers' diff_ids."""
    kept = {key: value for key, value in config.items() if key not in BUILD_TRACES}
    history = [entry if index < base_steps else
               {**entry, "created": epoch.iso(), "created_by": canonical_step(entry.get("created_by", ""), config)}
               for index, entry in enumerate(config.get("history", []))]
    return {**kept, "created": epoch.iso(), "history": history, "config": container_config(config.get("config", {})),
            "rootfs": {**config.get("rootfs", {"type": "layers"}), "diff_ids": diff_ids}}


def normalize_layer(source: tarfile.TarFile, out: Path) -> str:
    """Copy a layer tar with every file time at 0 and owners by number only; returns its diff_id."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as layer:
        for member in source:
            member.mtime = 0
            member.uname = member.gname = ""
            member.pax_headers = {key: value for key, value in member.pax_headers.items()
                                  if key not in PAX_TIMES and key not in ("uname", "gname")}
            layer.addfile(member, source.extractfile(member) if member.isfile() else None)
    with out.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


Measure = Callable[[str, dict[str, Any], list[tuple[str, Path]]], None]


def reproduce(client: Any, built: str, reference: str, base: str, epoch: Epoch, measure: Measure | None = None,
              memo: Path = MEMO) -> str:
    """Tag as `reference` the normalized image of `built` (an image on `base`); returns its id. An image
    normalized before with the same epoch is tagged again without being rewritten. `measure(id, config, layers)`
    sees the normalized image's layer files before they are deleted (the report measures them there)."""
    import docker.errors
    from .docker_build import split_reference
    key = f"{client.images.get(built).id} {epoch.seconds} {VERSION}"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    try:
        client.images.get(known[key]).tag(*split_reference(reference))
        return known[key]
    except (KeyError, docker.errors.ImageNotFound):
        pass
    image_id = normalize(client, built, reference, base, epoch, measure)
    write_atomic(memo, json.dumps({**dict(list(known.items())[-(MEMO_SIZE - 1):]), key: image_id}))
    return image_id


def normalize(client: Any, built: str, reference: str, base: str, epoch: Epoch, measure: Measure | None = None) -> str:
    """Rewrite the image `built` (on `base`) as described above and load it as `reference`; returns the engine's
    id of it (the config's digest; with the containerd image store, the manifest's)."""
    keep = set(client.images.get(base).attrs["RootFS"]["Layers"])
    base_steps = len(client.api.history(base))
    with tempfile.TemporaryDirectory(prefix="normalize-") as temporary:
        workdir = Path(temporary)
        with archive.saved(client.images.get(built)) as stream:
            image = archive.read_saved(stream, workdir)
        layers = [(diff_id, path) if diff_id in keep else rewrite_layer(path) for diff_id, path in image.layers]
        rewritten = normalized_config(image.config, [digest for digest, _ in layers], epoch, base_steps)
        engine_id = archive.load(client, workdir / "image.tar", rewritten, layers, reference,
                                 f"the normalized {reference}")
        if measure is not None:
            measure(engine_id, rewritten, layers)
    return engine_id


def rewrite_layer(path: Path) -> tuple[str, Path]:
    """A layer an engine made, normalized beside itself (the original goes); returns its new diff_id and file."""
    out = path.with_suffix(".normalized.tar")
    with tarfile.open(path) as source:
        diff_id = normalize_layer(source, out)
    path.unlink()
    return diff_id, out
