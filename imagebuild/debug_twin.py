"""`--debug`: a twin of the image, tagged `<tag>-debug`, with a busybox shell at /busybox (Debian's busybox-static,
pinned in build/debian.lock.json like the bases' packages), for troubleshooting only, as distroless's :debug
images are. Built from build/Dockerfile.debug on top of the image itself, so it differs by one layer.
Never built unless asked, never pushed unless --push is given with --debug.
"""
from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import ROOT, BuildError
from .debian_lock import lock_entry, mmdebstrap, pinned_names, resolve_section, verify_debs
from .progress import say

PACKAGE = "busybox-static"
DOCKERFILE = "build/Dockerfile.debug"
CACHE = ROOT / ".cache" / "busybox"  # the binary, under the .deb's sha256


def reference(image: str) -> str:
    """REPOSITORY:TAG-debug for REPOSITORY:TAG."""
    from .docker_build import split_reference
    repository, tag = split_reference(image)
    return f"{repository}:{tag}-debug"


def busybox(update: bool, locked: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The busybox binary from the locked busybox-static .deb (downloaded once, checked against the lock) and
    the lock's `debug` section (new when re-resolved)."""
    section = resolve_section("debug", [PACKAGE], update, locked)
    if section:
        cached = CACHE / section["packages"][PACKAGE]["sha256"] / "busybox"
        if cached.is_file():
            return cached, section
    say(f"fetching Debian's {PACKAGE} for the debug twin")
    with tempfile.TemporaryDirectory(prefix="busybox-") as temporary:
        debs = {deb.name: deb for deb in mmdebstrap("extract", pinned_names(section, [PACKAGE]),
                                                       Path(temporary) / "root")}
        if PACKAGE not in debs:
            raise BuildError(f"{PACKAGE} was not downloaded: check the Debian mirror")
        verify_debs(debs, section, "debug")
        deb = debs[PACKAGE]
        section = {"packages": {PACKAGE: lock_entry(deb)}}
        with deb.files() as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("./") in ("bin/busybox", "usr/bin/busybox")),
                          None)
            if member is None:
                raise BuildError(f"{deb.path.name} has no bin/busybox")
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
    cached = CACHE / deb.sha256 / "busybox"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    cached.chmod(0o755)
    return cached, section


def applets(binary: Path) -> list[str]:
    """The commands this busybox provides (`busybox --list`, run on the build machine: the binary is static)."""
    result = subprocess.run([str(binary), "--list"], capture_output=True, text=True)
    if result.returncode != 0 or "sh" not in result.stdout.split():
        raise BuildError(f"{binary} --list failed: remove {binary.parent} and build again")
    return sorted(set(result.stdout.split()) - {"busybox"})


def context(binary: Path) -> io.BytesIO:
    """build/Dockerfile.debug, busybox/busybox and a link to it for each applet (fixed times and owners)."""
    from .docker_build import debug_context
    return debug_context(DOCKERFILE, binary, applets(binary))
