"""The Debian packages of the base images, pinned: build/debian.lock.json records, per Debian architecture (amd64,
arm64: imagebuild/platforms.py) and per base (builder, runtime, debug), each .deb's version, sha256 and pool path.
Builds fetch exactly those (imagebuild/debs.py: Python and the mirror only). Resolving a new lock
(`--update-lock`, a maintainer's command) takes Debian's own tools: mmdebstrap resolves the packages and their
dependencies from the mirror, and the mirror's Packages index gives each one's pool path.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from modelcard.card import sha256_file

from . import ROOT, BuildError, write_atomic
from .debs import Deb, mirror
from .platforms import Platform

SUITE = "trixie"
LOCK = ROOT / "build" / "debian.lock.json"
RUNTIME_LIST = ROOT / "build" / "runtime-packages.txt"
BUILDER_LIST = ROOT / "build" / "builder-packages.txt"


def read_groups(path: Path) -> dict[str, list[str]]:
    """Package names by layer ("[name]" lines start a layer; no header means one layer "packages")."""
    groups: dict[str, list[str]] = {}
    current = "packages"
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        groups.setdefault(current, []).append(line)
    return groups


def read_lock() -> dict[str, Any]:
    """The whole lock: {Debian architecture: {base: section}}."""
    return json.loads(LOCK.read_text(encoding="utf-8")) if LOCK.exists() else {}


def sections(lock: dict[str, Any], platform: Platform) -> dict[str, Any]:
    """The lock's sections for one platform ({} when it has none yet)."""
    return lock.get(platform.debian, {})


def with_sections(lock: dict[str, Any], platform: Platform, **updated: dict[str, Any]) -> dict[str, Any]:
    """A new lock: `lock` with some of `platform`'s sections replaced."""
    return {**lock, platform.debian: {**sections(lock, platform), **updated}}


def write_lock(lock: dict[str, Any]) -> None:
    """Atomic write: a crash never leaves half a lock."""
    write_atomic(LOCK, json.dumps(lock, indent=2, sort_keys=True) + "\n")


def mmdebstrap(variant: str, include: Iterable[str], target: Path, platform: Platform) -> list[Deb]:
    """Run mmdebstrap into a directory and return every .deb it downloaded (the essential ones included). For
    another architecture than the host's, the apt variant runs maintainer scripts under emulation (mmdebstrap
    needs qemu-user-static registered through binfmt_misc); the extract variant runs none."""
    if shutil.which("mmdebstrap") is None:
        raise BuildError("--update-lock resolves Debian packages with mmdebstrap, which this machine lacks: run it "
                         "on Debian or Ubuntu (`apt-get install mmdebstrap`), or in a Debian container; builds "
                         "need only the lock")
    command = ["mmdebstrap", f"--variant={variant}", f"--architectures={platform.debian}", "--format=directory",
               "--include=" + ",".join(include),
               "--skip=cleanup/apt/cache", "--skip=essential/unlink", SUITE, str(target)]
    command.append(mirror())
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith(("E:", "W: Unable"))]
        last = (errors or result.stderr.splitlines() or ['?'])[-1]
        raise BuildError(f"mmdebstrap {variant} {SUITE} {platform.debian} failed: {last} "
                         f"(a version pinned in {LOCK.name} may have left the mirror: rerun with --update-lock)")
    debs = []
    for path in sorted((target / "var/cache/apt/archives").glob("*.deb")):
        name, version, _ = path.name.split("_", 2)
        debs.append(Deb(path, name, version.replace("%3a", ":"), sha256_file(path)))
    return debs


def pinned_names(section: dict[str, Any], names: Iterable[str]) -> list[str]:
    packages = section.get("packages", {})
    return [f"{name}={packages[name]['version']}" if name in packages else name for name in names]


def verify_debs(debs: dict[str, Deb], section: dict[str, Any], what: str) -> None:
    for name, entry in section.get("packages", {}).items():
        deb = debs.get(name)
        if deb is None:
            continue
        if deb.version != entry["version"] or deb.sha256 != entry["sha256"]:
            raise BuildError(f"{what} package {name} {deb.version} has sha256 {deb.sha256[:16]}..., the lock pins "
                             f"{entry['version']} {entry['sha256'][:16]}...: refusing it (rerun with --update-lock "
                             f"to accept the mirror's current packages)")


def lock_entry(deb: Deb) -> dict[str, str]:
    return {"version": deb.version, "sha256": deb.sha256, "file": deb.path.name}


def with_pool_paths(section: dict[str, Any], platform: Platform) -> dict[str, Any]:
    """The section with each package's pool path (the Packages index's Filename), checked against its sha256, so
    that builds can fetch it by URL (imagebuild/debs.py). Reads the mirror's index of SUITE/main for the platform's
    architecture (it lists the architecture-independent packages too)."""
    import lzma
    import urllib.request
    index = f"{mirror()}/dists/{SUITE}/main/binary-{platform.debian}/Packages.xz"
    with urllib.request.urlopen(index, timeout=120) as response:
        text = lzma.decompress(response.read()).decode("utf-8", errors="replace")
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if line[:1].strip() and ": " in line)
        if {"Package", "Version", "Filename", "SHA256"} <= fields.keys():
            found[fields["Package"], fields["Version"]] = (fields["Filename"], fields["SHA256"])
    packages = {}
    for name, entry in section.get("packages", {}).items():
        path, sha256 = found.get((name, entry["version"]), ("", ""))
        if sha256 != entry["sha256"]:
            raise BuildError(f"{index} has no {name} {entry['version']} with the locked sha256: rerun with "
                             f"--update-lock")
        packages[name] = {**entry, "path": path}
    return {**section, "packages": packages}


def resolve_section(kind: str, wanted: list[str], update: bool, section: dict[str, Any],
                    platform: Platform) -> dict[str, Any]:
    """The lock's `kind` section, checked to cover `wanted`; empty with update=True (re-resolve everything)."""
    missing = [name for name in wanted if name not in section.get("packages", {})]
    if missing and not update:
        raise BuildError(f"{LOCK.relative_to(ROOT)} has no {platform.debian} {kind} entry for "
                         f"{', '.join(missing)}; rerun with --update-lock")
    return {} if update else section


def section_key(section: dict[str, Any]) -> str:
    """A short key of what a section pins (where a package is fetched from is not part of it)."""
    pinned = {**section, "packages": {name: {key: value for key, value in entry.items() if key != "path"}
                                      for name, entry in section.get("packages", {}).items()}}
    return hashlib.sha256(json.dumps(pinned, sort_keys=True).encode()).hexdigest()[:12]
