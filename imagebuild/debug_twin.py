"""`--debug`: a twin of the image, tagged `<tag>-debug`, with a busybox shell at /busybox (Debian's busybox-static,
pinned in build/debian.lock.json like the bases' packages), for troubleshooting only, as distroless's :debug
images are. Built from build/Dockerfile.debug on top of the image itself, so it differs by one layer.
Never built unless asked, never pushed unless --push is given with --debug.
"""
from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from . import ROOT, BuildError, debs
from .archive import member_bytes
from .bases import import_image
from .debian_lock import lock_entry, mmdebstrap, pinned_names, resolve_section, verify_debs, with_pool_paths
from .platforms import Platform
from .progress import say

PACKAGE = "busybox-static"
DOCKERFILE = "build/Dockerfile.debug"
CACHE = ROOT / ".cache" / "busybox"  # the binary, under the .deb's sha256
CACHE_IMAGE = "sklearn-model-service-busybox"  # a moment's image of the binary alone, to list its applets


def reference(image: str) -> str:
    """REPOSITORY:TAG-debug for REPOSITORY:TAG."""
    from .docker_build import split_reference
    repository, tag = split_reference(image)
    return f"{repository}:{tag}-debug"


def busybox(update: bool, locked: dict[str, Any], platform: Platform) -> tuple[Path, dict[str, Any]]:
    """The busybox binary from the locked busybox-static .deb (fetched by imagebuild/debs.py, checked against the
    lock) and the lock's `debug` section (new when re-resolved: a maintainer's command, with Debian's tools)."""
    section = resolve_section("debug", [PACKAGE], update, locked, platform)
    if update:
        with tempfile.TemporaryDirectory(prefix="busybox-") as temporary:
            resolved = {deb.name: deb for deb in mmdebstrap("extract", pinned_names(section, [PACKAGE]),
                                                            Path(temporary) / "root", platform)}
            verify_debs(resolved, section, "debug")
            section = with_pool_paths({"packages": {PACKAGE: lock_entry(resolved[PACKAGE])}}, platform)
    cached = CACHE / section["packages"][PACKAGE]["sha256"] / "busybox"
    if cached.is_file():
        return cached, section
    say(f"fetching Debian's {PACKAGE} for the debug twin")
    deb = debs.fetch_section(section, [PACKAGE])[PACKAGE]
    with deb.files() as archive:
        member = next((m for m in archive.getmembers() if m.name.lstrip("./") in ("bin/busybox", "usr/bin/busybox")),
                      None)
        if member is None:
            raise BuildError(f"{deb.path.name} has no bin/busybox")
        data = member_bytes(archive, member)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    cached.chmod(0o755)
    return cached, section


def applets(client: Any, binary: Path, platform: Platform) -> list[str]:
    """The commands this busybox provides (`busybox --list`, run once per binary in a container of the binary
    alone, of its platform, since the build machine may not run Linux executables; kept beside the binary)."""
    import docker.errors
    listed = binary.with_name("applets")
    if listed.is_file():
        return listed.read_text(encoding="utf-8").split()
    repository, tag = CACHE_IMAGE, binary.parent.name[:12]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as root:
        info = tarfile.TarInfo("busybox")
        info.size, info.mode = binary.stat().st_size, 0o755
        with binary.open("rb") as handle:
            root.addfile(info, handle)
    buffer.seek(0)
    import_image(client, buffer, f"{repository}:{tag}", platform)
    try:
        output = client.containers.run(f"{repository}:{tag}", ["/busybox", "--list"], remove=True,
                                       network_disabled=True, platform=platform.name).decode()
    except docker.errors.DockerException as exc:
        raise BuildError(f"busybox --list failed in a container: {exc}; remove {binary.parent} and build again") \
            from None
    finally:
        client.images.remove(f"{repository}:{tag}")
    if "sh" not in output.split():
        raise BuildError(f"busybox --list printed no sh: remove {binary.parent} and build again")
    commands = sorted(set(output.split()) - {"busybox"})
    listed.write_text("\n".join(commands) + "\n", encoding="utf-8")
    return commands


def context(binary: Path, commands: list[str]) -> io.BytesIO:
    """build/Dockerfile.debug, busybox/busybox and a link to it for each applet (fixed times and owners)."""
    from .docker_build import debug_context
    return debug_context(DOCKERFILE, binary, commands)
