"""The two base images, from Debian 13 packages alone (fetched by imagebuild/debs.py: no registry, no Debian tools):
- builder: a minimal Debian 13 root with python3.13 (the packages of mmdebstrap's apt variant, as locked), its
  maintainer scripts run by dpkg inside a container, imported into Docker;
- runtime: the distroless-style root of imagebuild/rootfs.py, loaded as an image with one layer per package
  group and the distroless python3 configuration (entrypoint, environment, user 65532, created at the epoch).
Each is made for one platform from that architecture's lock sections (the runtime, unpacked in Python, for any
platform on any host; the builder's maintainer scripts run in a container of its platform, under emulation on
another host), and tagged with the key of its lock section, so an engine that has it already is not asked to
rebuild it.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from modelcard.card import sha256_file

from . import ROOT, BuildError, archive, write_atomic
from . import debs
from .docker_build import split_reference
from .debian_lock import (BUILDER_LIST, RUNTIME_LIST, SUITE, lock_entry, mmdebstrap, pinned_names, read_groups,
                          resolve_section, section_key, sections, verify_debs, with_pool_paths)
from .platforms import PLATFORMS, Platform
from .progress import say
from .rootfs import DEBS_IN_STAGE, NONROOT, RUNTIME_TRIM, compose_builder_stage, compose_runtime

BASE_REPOSITORY = "sklearn-model-service-base"
USED_BASES = ROOT / ".cache" / "base-images.json"  # the bases this checkout built with, for remove_superseded
PYTHON = "/usr/bin/python3.13"
EPOCH = "1970-01-01T00:00:00Z"
RUNTIME_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LANG=C.UTF-8"]


def _docker_archive(layers: list[tuple[str, Path]], reference: str, out: Path, section: str,
                    platform: Platform) -> None:
    """A `docker load` archive with the distroless python3 :nonroot configuration, created at the epoch."""
    digests = [(group, f"sha256:{sha256_file(path)}", path) for group, path in layers]
    variant = {"variant": platform.variant} if platform.variant else {}
    config = {
        "architecture": platform.architecture, **variant, "os": "linux", "created": EPOCH,
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
    trim = sha256_file(RUNTIME_TRIM)
    return section_key({**section, "composition": RUNTIME_COMPOSITION, "trim": trim})


def _reference(kind: str, section: dict[str, Any]) -> str:
    return f"{BASE_REPOSITORY}/{kind}:{image_key(kind, section)}"


def _loaded(client: Any, kind: str, section: dict[str, Any]) -> str | None:
    """The base image built from this lock section, if Docker already has it."""
    reference = _reference(kind, section) if section else None
    return reference if reference and _image_exists(client, reference) else None


def check_same_python(*sections: dict[str, Any]) -> None:
    """The runtime runs the standard library's bytecode and the extension modules the builder made, and every
    platform's image answers as the others do: every base of every platform must carry the same Python build."""
    name = "libpython3.13-stdlib"
    versions = {section["packages"][name]["version"] for section in sections if name in section.get("packages", {})}
    if len(versions) > 1:
        raise BuildError(f"the lock's bases carry {name} {' and '.join(sorted(versions))}: an image would run one "
                         f"Python's bytecode on the other (rerun with --update-lock to lock them all again)")


def named_by_lock(lock: dict[str, Any]) -> set[str]:
    """The builder and runtime bases `lock` names, for every platform it pins."""
    pinned = [sections(lock, platform) for platform in PLATFORMS.values()]
    return {_reference(kind, section[kind]) for section in pinned for kind in ("builder", "runtime") if section.get(kind)}


def remove_superseded(client: Any, in_use: set[str], named: set[str], record: Path = USED_BASES) -> None:
    """Remove the base images this checkout used before and its current lock no longer names (`named`: an arm64
    base stays through amd64-only builds; another checkout's bases, on a shared engine, are left alone); the
    record keeps those still named beside this build's (`in_use`)."""
    import docker.errors
    used = set(json.loads(record.read_text(encoding="utf-8"))) if record.is_file() else set()
    for tag in sorted(used - in_use - named):
        say(f"removing superseded base {tag}")
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass
    write_atomic(record, json.dumps(sorted(in_use | (used & named))) + "\n")  # another build may be reading it


def runtime_base(client: Any, update: bool, locked: dict[str, Any], platform: Platform) -> tuple[str, dict[str, Any]]:
    """The local distroless-style runtime base for `platform`, assembled unless an image of the same lock section
    exists; returns its reference and its lock section (new when re-resolved)."""
    groups = read_groups(RUNTIME_LIST)
    wanted = [name for names in groups.values() for name in names]
    section = resolve_section("runtime", wanted, update, locked, platform)
    if update:
        section = _resolve("runtime", "extract", wanted, section, platform)
    if loaded := _loaded(client, "runtime", section):
        return loaded, section
    say(f"assembling the {platform.name} runtime base from {len(wanted)} Debian {SUITE} packages")
    downloaded = debs.fetch_section(section, wanted)
    reference = _reference("runtime", section)
    with tempfile.TemporaryDirectory(prefix="runtime-base-") as temporary:
        workdir = Path(temporary)
        layers = compose_runtime(downloaded, groups, workdir)
        image_tar = workdir / "image.tar"
        _docker_archive(layers, reference, image_tar, image_key("runtime", section), platform)
        with image_tar.open("rb") as handle:
            client.images.load(handle)
    return reference, section


def _resolve(kind: str, variant: str, wanted: list[str], section: dict[str, Any], platform: Platform) -> dict[str, Any]:
    """`--update-lock`: the packages mmdebstrap resolves for `wanted` (Debian's tools: a maintainer's command),
    checked against what the lock pinned, as a new lock section with each package's pool path."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-resolve-") as temporary:
        everything = wanted + sorted(set(section.get("packages", {})) - set(wanted))
        downloaded = {deb.name: deb for deb in mmdebstrap(variant, pinned_names(section, everything),
                                                            Path(temporary) / "root", platform)}
        absent = [name for name in wanted if name not in downloaded]
        if absent:
            raise BuildError(f"{', '.join(absent)} not found in Debian {SUITE}: check build/{kind}-packages.txt")
        verify_debs(downloaded, section, kind)
        if kind == "runtime":
            resolved = {"packages": {name: lock_entry(downloaded[name]) for name in sorted(wanted)},
                        "not_shipped": sorted(set(downloaded) - set(wanted))}
        else:
            resolved = {"packages": {name: lock_entry(deb) for name, deb in sorted(downloaded.items())}}
    return with_pool_paths(resolved, platform)


def builder_base(client: Any, update: bool, locked: dict[str, Any], platform: Platform) -> tuple[str, dict[str, Any]]:
    """The local Debian 13 builder base for `platform` (the apt variant's packages plus
    build/builder-packages.txt, as locked); returns its reference and its lock section (new when re-resolved).

    Assembled without a package manager on the host: the locked .debs are unpacked in Python into a first stage,
    which is imported; `dpkg --install` then runs every maintainer script in a container of it (root in the
    container, any user on the host), and that container's file system, exported, is the base: one layer."""
    wanted = read_groups(BUILDER_LIST)["packages"]
    section = resolve_section("builder", wanted, update, locked, platform)
    if update:
        section = _resolve("builder", "apt", wanted, section, platform)
    if loaded := _loaded(client, "builder", section):
        return loaded, section
    say(f"assembling the {platform.name} builder base (Debian {SUITE}, python3.13, {len(section['packages'])} "
        f"packages)")
    reference = _reference("builder", section)
    repository, tag = split_reference(reference)
    stage = f"{repository}-stage:{tag}"
    downloaded = debs.fetch_section(section)
    with tempfile.TemporaryDirectory(prefix="builder-base-") as temporary:
        stage_tar = Path(temporary) / "stage.tar"
        compose_builder_stage(downloaded, stage_tar)
        import_image(client, stage_tar, stage, platform)
        stage_tar.unlink()
        container = client.containers.create(stage, ["/usr/bin/sh", "-c", DPKG_INSTALL], network_disabled=True,
                                             environment={"DEBIAN_FRONTEND": "noninteractive", "PATH": PATH},
                                             platform=platform.name)
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
        import_image(client, root_tar, reference, platform, changes=["ENV LANG=C.UTF-8", "CMD [\"/bin/bash\"]"])
    return reference, section


def import_image(client: Any, tar: Path | BinaryIO, reference: str, platform: Platform,
                 changes: list[str] | None = None) -> None:
    """`docker import` of a root file system tar (a file, or a stream) as an image of `platform` (the Docker
    SDK's import_image takes no platform; the engine's API does, since 1.32)."""
    repository, tag = split_reference(reference)
    params: dict[str, Any] = {"fromSrc": "-", "repo": repository, "tag": tag, "platform": platform.name}
    if changes:
        params["changes"] = changes
    with (tar.open("rb") if isinstance(tar, Path) else contextlib.nullcontext(tar)) as handle:
        response = client.api._post(client.api._url("/images/create"), data=handle, params=params,
                                    headers={"Content-Type": "application/tar"}, timeout=None)
    client.api._raise_for_status(response)


PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Every maintainer script run, in dependency order, over the files the stage already holds; then the .debs go.
DPKG_INSTALL = (f"dpkg --install --force-depends --force-confnew /{DEBS_IN_STAGE}/*.deb >/tmp/dpkg.log 2>&1 "
                f"|| {{ tail -5 /tmp/dpkg.log; exit 1; }}; rm -rf /{DEBS_IN_STAGE}/* /tmp/dpkg.log")
