"""Debian packages fetched and read without Debian's tools, so that a build needs only Python and a Docker engine
(macOS, Windows, any Linux; no root): each .deb of build/debian.lock.json is downloaded from the mirror by its
pool path, checked against the lock's sha256, kept under .cache/debs by that sha256, and read in Python. A .deb
is an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*` (xz, gzip, zstd or none).

The mirror is DEBIAN_MIRROR, else the Debian archive in the host's apt sources; none is written into the code.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from . import ROOT, BuildError, write_atomic
from .archive import member_bytes

CACHE = ROOT / ".cache" / "debs"
AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class Deb:
    """A package file and what the lock says it is."""

    path: Path
    name: str
    version: str
    sha256: str

    def _member(self, prefix: str) -> tarfile.TarFile:
        for name, data in ar_members(self.path.read_bytes()):
            if name.startswith(prefix):
                return _tar(name, data)
        raise BuildError(f"{self.path.name} has no {prefix}* member: not a Debian package (remove it from "
                         f"{CACHE} and build again)")

    def control(self) -> str:
        """The control file, as dpkg-deb -f prints it."""
        return self._control_file("control")

    def md5sums(self) -> str:
        """The package's md5sums control file (empty when it ships none)."""
        return self._control_file("md5sums")

    def _control_file(self, wanted: str) -> str:
        with self._member("control.tar") as control:
            for member in control:
                if member.name.lstrip("./") == wanted and member.isfile():
                    return member_bytes(control, member).decode()
        return ""

    def files(self) -> tarfile.TarFile:
        """The package's file system tree (data.tar)."""
        return self._member("data.tar")


def ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each member of an `ar` archive (the common format: 60-byte headers, even padding)."""
    if not data.startswith(AR_MAGIC):
        raise BuildError("not an ar archive (a .deb starts with !<arch>)")
    position = len(AR_MAGIC)
    while position + 60 <= len(data):
        header = data[position:position + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        start = position + 60
        yield name, data[start:start + size]
        position = start + size + (size % 2)


def _tar(name: str, data: bytes) -> tarfile.TarFile:
    if name.endswith(".zst"):
        import zstandard
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # xz, gzip, bzip2 or plain


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


def mirror() -> str:
    """The Debian archive to download from."""
    found = os.environ.get("DEBIAN_MIRROR") or host_mirror()
    if not found:
        raise BuildError("no Debian mirror: set DEBIAN_MIRROR to a Debian archive URL (the folder that holds "
                         "dists/ and pool/; any official mirror), and build again")
    return found.rstrip("/")


def fetch(name: str, entry: dict[str, Any], cache: Path = CACHE) -> Deb:
    """The locked package `name`: from the cache, else downloaded and checked against the lock's sha256."""
    if "path" not in entry:
        raise BuildError(f"build/debian.lock.json has no pool path for {name}: rerun with --update-lock")
    path = cache / entry["sha256"] / Path(entry["path"]).name
    if not path.is_file():
        url = f"{mirror()}/{entry['path']}"
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise BuildError(f"cannot download {name} {entry['version']} from {url}: {exc} (a version pinned in "
                             f"build/debian.lock.json may have left the mirror: rerun with --update-lock)") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise BuildError(f"{url} has sha256 {digest[:16]}..., the lock pins {entry['sha256'][:16]}...: refusing "
                             f"it (rerun with --update-lock to accept the mirror's current packages)")
        write_atomic(path, data)  # builds running at once each write their own temporary file
    return Deb(path, name, entry["version"], entry["sha256"])


def fetch_section(section: dict[str, Any], names: list[str] | None = None) -> dict[str, Deb]:
    """Every locked package of a lock section (or only `names`), fetched."""
    packages = section.get("packages", {})
    return {name: fetch(name, packages[name]) for name in (names if names is not None else sorted(packages))}
