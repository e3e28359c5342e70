"""The two base images, from Debian 13 packages alone (fetched by imagebuild/debs.py: no registry, no Debian tools):
- builder: a minimal Debian 13 root with python3.13 (the packages of mmdebstrap's apt variant, as locked), its
  maintainer scripts run by dpkg inside a container, imported into Docker;
- runtime: the distroless-style root of imagebuild/rootfs.py, loaded as an image with one layer per package
  group and the distroless python3 configuration (entrypoint, environment, user 65532, created at the epoch).
Each is tagged with the key of its lock section, so an engine that has it already is not asked to rebuild it.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from . import ROOT, BuildError, archive
from . import debs
from .debian_lock import (BUILDER_LIST, RUNTIME_LIST, SUITE, lock_entry, mmdebstrap, pinned_names, read_groups,
                          resolve_section, section_key, sha256_file, verify_debs, with_pool_paths)
from .progress import say
from .rootfs import DEBS_IN_STAGE, NONROOT, RUNTIME_TRIM, compose_builder_stage, compose_runtime

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
    if update:
        section = _resolve("runtime", "extract", wanted, section)
    if loaded := _loaded(client, "runtime", section):
        return loaded, section
    say(f"assembling the runtime base from {len(wanted)} Debian {SUITE} packages")
    downloaded = debs.fetch_section(section, wanted)
    reference = _reference("runtime", section)
    with tempfile.TemporaryDirectory(prefix="runtime-base-") as temporary:
        workdir = Path(temporary)
        layers = compose_runtime(downloaded, groups, workdir)
        image_tar = workdir / "image.tar"
        _docker_archive(layers, reference, image_tar, image_key("runtime", section))
        with image_tar.open("rb") as handle:
            client.images.load(handle)
    return reference, section


def _resolve(kind: str, variant: str, wanted: list[str], section: dict[str, Any]) -> dict[str, Any]:
    """`--update-lock`: the packages mmdebstrap resolves for `wanted` (Debian's tools: a maintainer's command),
    checked against what the lock pinned, as a new lock section with each package's pool path."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-resolve-") as temporary:
        everything = wanted + sorted(set(section.get("packages", {})) - set(wanted))
        downloaded = {deb.name: deb for deb in mmdebstrap(variant, pinned_names(section, everything),
                                                            Path(temporary) / "root")}
        absent = [name for name in wanted if name not in downloaded]
        if absent:
            raise BuildError(f"{', '.join(absent)} not found in Debian {SUITE}: check build/{kind}-packages.txt")
        verify_debs(downloaded, section, kind)
        if kind == "runtime":
            resolved = {"packages": {name: lock_entry(downloaded[name]) for name in sorted(wanted)},
                        "not_shipped": sorted(set(downloaded) - set(wanted))}
        else:
            resolved = {"packages": {name: lock_entry(deb) for name, deb in sorted(downloaded.items())}}
    return with_pool_paths(resolved)


def builder_base(client: Any, update: bool, locked: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The local Debian 13 builder base (the apt variant's packages plus build/builder-packages.txt, as locked);
    returns its reference and its lock section (new when re-resolved).

    Assembled without a package manager on the host: the locked .debs are unpacked in Python into a first stage,
    which is imported; `dpkg --install` then runs every maintainer script in a container of it (root in the
    container, any user on the host), and that container's file system, exported, is the base: one layer."""
    wanted = read_groups(BUILDER_LIST)["packages"]
    section = resolve_section("builder", wanted, update, locked)
    if update:
        section = _resolve("builder", "apt", wanted, section)
    if loaded := _loaded(client, "builder", section):
        return loaded, section
    say(f"assembling the builder base (Debian {SUITE}, python3.13, {len(section['packages'])} packages)")
    reference = _reference("builder", section)
    repository, tag = reference.rsplit(":", 1)
    stage = f"{repository}-stage:{tag}"
    downloaded = debs.fetch_section(section)
    with tempfile.TemporaryDirectory(prefix="builder-base-") as temporary:
        stage_tar = Path(temporary) / "stage.tar"
        compose_builder_stage(downloaded, stage_tar)
        client.api.import_image_from_file(str(stage_tar), repository=f"{repository}-stage", tag=tag)
        stage_tar.unlink()
        container = client.containers.create(stage, ["/usr/bin/sh", "-c", DPKG_INSTALL], network_disabled=True,
                                             environment={"DEBIAN_FRONTEND": "noninteractive", "PATH": PATH})
        try:
            container.start()
            code = container.wait()["StatusCode"]
            if code != 0:
                last = container.logs().decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise BuildError(f"dpkg --install of the builder's {len(downloaded)} packages failed (exit {code}): "
                                 f"{last[0]}")
            root_tar = Path(temporary) / "root.tar"
            with root_tar.open("wb") as out:
                for chunk in container.export():
                    out.write(chunk)
        finally:
            container.remove(force=True)
            client.images.remove(stage)
        client.api.import_image_from_file(str(root_tar), repository=repository, tag=tag,
                                          changes=["ENV LANG=C.UTF-8", "CMD [\"/bin/bash\"]"])
    return reference, section


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Every maintainer script run, in dependency order, over the files the stage already holds; then the .debs go.
DPKG_INSTALL = (f"dpkg --install --force-depends --force-confnew /{DEBS_IN_STAGE}/*.deb >/tmp/dpkg.log 2>&1 "
                f"|| {{ tail -5 /tmp/dpkg.log; exit 1; }}; rm -rf /{DEBS_IN_STAGE}/* /tmp/dpkg.log")
