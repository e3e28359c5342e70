"""The Debian packages of the base images, pinned: build/debian.lock.json records each .deb's version and sha256,
honoured on rebuild; mmdebstrap resolves and downloads them (from the mirror in the host's apt configuration),
and every download is checked against the lock.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import ROOT, BuildError, write_atomic

SUITE = "trixie"
LOCK = ROOT / "build" / "debian.lock.json"
RUNTIME_LIST = ROOT / "build" / "runtime-packages.txt"
BUILDER_LIST = ROOT / "build" / "builder-packages.txt"


@dataclass(frozen=True)
class Deb:
    """A downloaded package file."""

    path: Path
    name: str
    version: str
    sha256: str

    def control(self) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(self.path)], check=True, capture_output=True,
                              text=True).stdout

    def md5sums(self) -> str:
        """The package's md5sums control file (empty when it ships none)."""
        data = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(self.path)], check=True,
                              capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as control:
            member = next((m for m in control.getmembers() if m.name.lstrip("./") == "md5sums"), None)
            return control.extractfile(member).read().decode() if member is not None else ""  # type: ignore[union-attr]

    def files(self) -> tarfile.TarFile:
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(self.path)], check=True,
                              capture_output=True).stdout
        return tarfile.open(fileobj=io.BytesIO(data))


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def host_mirror() -> str | None:
    """The Debian archive URI from the host's apt sources (deb822 or one-line), never a hard-coded host."""
    sources = Path("/etc/apt/sources.list.d")
    candidates = sorted(sources.glob("*.sources")) + sorted(sources.glob("*.list")) + [Path("/etc/apt/sources.list")]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            if re.search(r"^Suites:.*-security", stanza, re.M):
                continue
            uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if uri and "/debian" in uri.group(1) and re.search(r"^Components:.*\bmain\b", stanza, re.M):
                return uri.group(1)
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian/?)\s+(\S+)\s", line)
            if match and not match.group(2).endswith("-security"):
                return match.group(1)
    return None


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
    return json.loads(LOCK.read_text(encoding="utf-8")) if LOCK.exists() else {}


def write_lock(lock: dict[str, Any]) -> None:
    """Atomic write: a crash never leaves half a lock."""
    write_atomic(LOCK, json.dumps(lock, indent=2, sort_keys=True) + "\n")


def mmdebstrap(variant: str, include: Iterable[str], target: Path) -> list[Deb]:
    """Run mmdebstrap into a directory and return every .deb it downloaded (the essential ones included)."""
    command = ["mmdebstrap", f"--variant={variant}", "--format=directory", "--include=" + ",".join(include),
               "--skip=cleanup/apt/cache", "--skip=essential/unlink", SUITE, str(target)]
    mirror = os.environ.get("DEBIAN_MIRROR") or host_mirror()
    if mirror:
        command.append(mirror)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith(("E:", "W: Unable"))]
        raise BuildError(f"mmdebstrap {variant} {SUITE} failed: {(errors or result.stderr.splitlines() or ['?'])[-1]} "
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


def resolve_section(kind: str, wanted: list[str], update: bool, section: dict[str, Any]) -> dict[str, Any]:
    """The lock's `kind` section, checked to cover `wanted`; empty with update=True (re-resolve everything)."""
    missing = [name for name in wanted if name not in section.get("packages", {})]
    if missing and not update:
        raise BuildError(f"{LOCK.relative_to(ROOT)} has no {kind} entry for {', '.join(missing)}; "
                         f"rerun with --update-lock")
    return {} if update else section


def section_key(section: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()[:12]
