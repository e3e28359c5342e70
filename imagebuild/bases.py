"""The two base images, from Debian 13 packages alone, for machines that reach no container registry:
- builder: a minimal Debian 13 root with python3.13 (mmdebstrap --variant=apt), imported into Docker;
- runtime: the distroless-style root of imagebuild/rootfs.py, loaded as an image with one layer per package
  group and the distroless python3 configuration (entrypoint, environment, user 65532, created at the epoch).
Each is tagged with the key of its lock section, so an engine that has it already is not asked to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from . import ROOT, BuildError, archive
from .debian_lock import (BUILDER_LIST, RUNTIME_LIST, SUITE, lock_entry, mmdebstrap, pinned_names, read_groups,
                          resolve_section, section_key, sha256_file, verify_debs)
from .progress import say
from .rootfs import NONROOT, RUNTIME_TRIM, compose_runtime

BASE_REPOSITORY = "sklearn-model-service-base"
USED_BASES = ROOT / ".cache" / "base-images.json"  # the bases this checkout built with, for remove_superseded
PYTHON = "/usr/bin/python3.13"
EPOCH = "1970-01-01T00:00:00Z"
RUNTIME_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LANG=C.UTF-8"]


def _docker_archive(layers: list[tuple[str, Path]], reference: str, out: Path, section: str) -> None:
    """A `docker load` archive with the distroless python3 :nonroot configuration, created at the epoch."""
    digests = [(group, f"sha256:{sha256_file(path)}", path) for group, path in layers]
    config = {
        "architecture": "amd64", "os": "linux", "created": EPOCH,
        "config": {"Env": RUNTIME_ENV, "Entrypoint": [PYTHON], "User": f"{NONROOT}",
                   "WorkingDir": "/home/nonroot", "Labels": {"base.lock": section}},
        "rootfs": {"type": "layers", "diff_ids": [digest for _, digest, _ in digests]},
        "history": [{"created": EPOCH, "created_by": f"debian {SUITE} packages: {group} ({section})"}
                    for group, _, _ in digests],
    }
    archive.write(out, config, [(digest, path) for _, digest, path in digests], reference)


def _image_exists(client: Any, reference: str) -> bool:
    import docker.errors
    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


# Bumped whenever the runtime root is composed differently from the same packages, so a base built the old way
# is not reused: 2 added each package's md5sums to /var/lib/dpkg/status.d, 3 left the standard library's sources
# out (the image brings them as sourceless bytecode). The trim list counts by its content.
RUNTIME_COMPOSITION = 3


def image_key(kind: str, section: dict[str, Any]) -> str:
    """The base image's tag: its lock section's key, and for the runtime the way its root is composed."""
    if kind != "runtime":
        return section_key(section)
    trim = hashlib.sha256(RUNTIME_TRIM.read_bytes()).hexdigest()
    return section_key({**section, "composition": RUNTIME_COMPOSITION, "trim": trim})


def _reference(kind: str, section: dict[str, Any]) -> str:
    return f"{BASE_REPOSITORY}/{kind}:{image_key(kind, section)}"


def _loaded(client: Any, kind: str, section: dict[str, Any]) -> str | None:
    """The base image built from this lock section, if Docker already has it."""
    reference = _reference(kind, section) if section else None
    return reference if reference and _image_exists(client, reference) else None


def check_same_python(builder: dict[str, Any], runtime: dict[str, Any]) -> None:
    """The runtime runs the standard library's bytecode and the extension modules the builder made: both bases
    must carry the same Python build."""
    name = "libpython3.13-stdlib"
    versions = [section.get("packages", {}).get(name, {}).get("version") for section in (builder, runtime)]
    if None not in versions and versions[0] != versions[1]:
        raise BuildError(f"the builder has {name} {versions[0]} and the runtime {versions[1]}: the image would run "
                         f"one Python's bytecode on the other (rerun with --update-lock to lock both again)")


def remove_superseded(client: Any, keep: set[str], record: Path = USED_BASES) -> None:
    """Remove the base images this checkout used before and its current lock no longer names (another
    checkout's bases, on a shared engine, are left alone)."""
    import docker.errors
    used = set(json.loads(record.read_text(encoding="utf-8"))) if record.is_file() else set()
    for tag in sorted(used - keep):
        say(f"removing superseded base {tag}")
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(sorted(keep)) + "\n", encoding="utf-8")


def runtime_base(client: Any, update: bool, locked: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The local distroless-style runtime base, assembled unless an image of the same lock section exists;
    returns its reference and its lock section (new when re-resolved)."""
    groups = read_groups(RUNTIME_LIST)
    wanted = [name for names in groups.values() for name in names]
    section = resolve_section("runtime", wanted, update, locked)
    if loaded := _loaded(client, "runtime", section):
        return loaded, section
    say(f"assembling the runtime base from {len(wanted)} Debian {SUITE} packages")
    with tempfile.TemporaryDirectory(prefix="runtime-base-") as temporary:
        workdir = Path(temporary)
        downloaded = {deb.name: deb for deb in mmdebstrap("extract", pinned_names(section, wanted), workdir / "root")}
        absent = [name for name in wanted if name not in downloaded]
        if absent:
            raise BuildError(f"{', '.join(absent)} not found in Debian {SUITE}: check {RUNTIME_LIST.relative_to(ROOT)}")
        verify_debs(downloaded, section, "runtime")
        section = {"packages": {name: lock_entry(downloaded[name]) for name in sorted(wanted)},
                   "not_shipped": sorted(set(downloaded) - set(wanted))}
        reference = _reference("runtime", section)
        layers = compose_runtime(downloaded, groups, workdir)
        image_tar = workdir / "image.tar"
        _docker_archive(layers, reference, image_tar, image_key("runtime", section))
        with image_tar.open("rb") as handle:
            client.images.load(handle.read())
    return reference, section


def builder_base(client: Any, update: bool, locked: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The local Debian 13 builder base (mmdebstrap --variant=apt plus build/builder-packages.txt); returns its
    reference and its lock section (new when re-resolved)."""
    wanted = read_groups(BUILDER_LIST)["packages"]
    section = resolve_section("builder", wanted, update, locked)
    if loaded := _loaded(client, "builder", section):
        return loaded, section
    say(f"assembling the builder base (Debian {SUITE}, python3.13)")
    with tempfile.TemporaryDirectory(prefix="builder-base-") as temporary:
        root = Path(temporary) / "root"
        everything = wanted + sorted(set(section.get("packages", {})) - set(wanted))
        debs = {deb.name: deb for deb in mmdebstrap("apt", pinned_names(section, everything), root)}
        verify_debs(debs, section, "builder")
        section = {"packages": {name: lock_entry(deb) for name, deb in sorted(debs.items())}}
        reference = _reference("builder", section)
        shutil.rmtree(root / "var/cache/apt/archives")
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        root_tar = Path(temporary) / "root.tar"
        with tarfile.open(root_tar, "w") as tar:
            for entry in sorted(os.listdir(root)):
                tar.add(root / entry, arcname=entry)
        repository, tag = reference.rsplit(":", 1)
        client.api.import_image_from_file(str(root_tar), repository=repository, tag=tag,
                                          changes=["ENV LANG=C.UTF-8", "CMD [\"/bin/bash\"]"])
    return reference, section
