"""The runtime's root file system, composed from Debian packages as distroless composes python3-debian13:
packages unpacked without maintainer scripts (merged /usr, documentation but copyright files and glibc's gconv
left out, and the standard-library modules and system libraries build/runtime-trim.txt lists; the standard
library's sources too, since the image brings them as sourceless bytecode from the builder), passwd/group with
nonroot 65532, a CA bundle, /tmp 1777, and /var/lib/dpkg/status.d entries (control file and md5sums) for
scanners. One tar per package group, each a layer of the base image.
"""
from __future__ import annotations

import copy
import importlib.util
import io
import re
import tarfile
from functools import lru_cache
from types import ModuleType
from pathlib import Path
from collections.abc import Callable

from . import ROOT
from .archive import member_bytes
from .debs import Deb

NONROOT = 65532
MERGED_USR = ("bin/", "sbin/", "lib/", "lib64/")
# Documentation, and glibc's iconv modules (8 MB; usr/lib/TRIPLET/gconv/): Python's codecs never load them.
GCONV = re.compile(r"^usr/lib/[a-z0-9_]+-linux-gnu/gconv/")
DROPPED_PREFIXES = ("usr/share/man/", "usr/share/info/", "usr/share/lintian/",
                    "usr/share/locale/", "usr/share/doc-base/", "usr/share/bug/", "etc/cron.", "etc/logrotate.d/")
RUNTIME_TRIM = ROOT / "build" / "runtime-trim.txt"
STDLIB_SOURCE = re.compile(r"^usr/lib/python3\.\d+/(?!(site|dist)-packages/).*\.py$")
PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
          f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = f"root:x:0:\ntty:x:5:\nstaff:x:50:\nnogroup:x:65534:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\n" \
           "services: files\nethers: files\nrpc: files\n"


class RootWriter:
    """Writes normalized tar entries (uid/gid 0, merged /usr, sorted by caller), skipping duplicates."""

    def __init__(self, handle: io.BufferedIOBase):
        self.tar = tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT)
        self.seen: set[str] = set()

    def add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        name = info.name.lstrip("./").rstrip("/")
        if not name or name in self.seen:
            return
        self.seen.add(name)
        info.name = name
        info.uid = info.gid = info.uid if info.uid == NONROOT else 0
        info.uname = info.gname = ""
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)

    def directory(self, name: str, mode: int = 0o755, owner: int = 0) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
        self.add(info)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.add(info, data)

    def symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self.add(info)

    def close(self) -> None:
        self.tar.close()


def _canonical(name: str) -> str:
    """Merged /usr: /bin/x -> usr/bin/x, as base-files' links would resolve it."""
    name = name.lstrip("./")
    for prefix in MERGED_USR:
        if name.startswith(prefix):
            return "usr/" + name
    return name


@lru_cache(maxsize=1)
def _trim_rules() -> tuple[ModuleType, tuple[str, ...]]:
    """build/runtime_trim.py (shared with the builder's compile_imported.py) and the list's globs."""
    spec = importlib.util.spec_from_file_location("runtime_trim", ROOT / "build" / "runtime_trim.py")
    if spec is None or spec.loader is None:
        raise ImportError("build/runtime_trim.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.patterns(RUNTIME_TRIM)


def _trimmed(name: str) -> bool:
    module, globs = _trim_rules()
    return module.trimmed(name, globs)


def _keep(name: str) -> bool:
    """Drop documentation but each package's copyright file (licences travel with the binaries), and what
    build/runtime-trim.txt lists, and the standard library's sources (build/trim.py compiles them)."""
    if any(name.startswith(prefix) for prefix in DROPPED_PREFIXES) or GCONV.match(name) or STDLIB_SOURCE.match(name) \
            or _trimmed(name):
        return False
    if name.startswith("usr/share/doc/"):
        return name.count("/") == 3 or name.endswith("/copyright")
    return True


def _unpack(deb: Deb, writer: RootWriter, keep: Callable[[str], bool] | None = None) -> None:
    """A package's files that `keep` (default: the runtime's rules) takes; hard links become copies, since their
    target may sit in another layer."""
    keep = keep or _keep
    with deb.files() as archive:
        for member in archive.getmembers():
            name = _canonical(member.name)
            if not name or name in ("bin", "sbin", "lib", "lib64") or not keep(name):
                continue  # base-files' merged-/usr links stand for the four top-level folders
            if member.islnk():
                source = archive.getmember(member.linkname)
                data = member_bytes(archive, source)
                clone = tarfile.TarInfo(name)
                clone.size, clone.mode, clone.mtime = len(data), source.mode, source.mtime
                writer.add(clone, data)
                continue
            content = member_bytes(archive, member) if member.isfile() else None
            entry = copy.copy(member)  # renamed in a copy: a later hard link finds its target by the old name
            entry.name = name
            writer.add(entry, content)


def _static_files(writer: RootWriter, debs: dict[str, Deb]) -> None:
    """What distroless generates instead of running maintainer scripts."""
    for name in ("usr", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "etc/ssl", "etc/ssl/certs",
                 "var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/status.d", "home"):
        writer.directory(name)
    for link in ("bin", "sbin", "lib", "lib64"):
        writer.symlink(link, f"usr/{link}")
    writer.directory("tmp", 0o1777)
    writer.directory("root", 0o700)
    writer.directory("home/nonroot", 0o700, owner=NONROOT)
    writer.file("etc/passwd", PASSWD.encode())
    writer.file("etc/group", GROUP.encode())
    writer.file("etc/nsswitch.conf", NSSWITCH.encode())
    certificates = []
    with debs["ca-certificates"].files() as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".crt") and "/usr/share/ca-certificates/" in member.name:
                certificates.append(member_bytes(archive, member))
    writer.file("etc/ssl/certs/ca-certificates.crt", b"".join(certificates))


ONLY_GENERATED = {"ca-certificates"}  # shipped as the generated bundle, not as the package's scripts


def shipped_md5sums(md5sums: str, generated: bool) -> str:
    """The md5sums lines of the files the image ships (merged-/usr paths; documentation and gconv left out), as
    distroless writes status.d/<package>.md5sums for scanners that map files to packages."""
    if generated:
        return ""
    lines = []
    for line in md5sums.splitlines():
        digest, _, name = line.partition("  ")
        path = _canonical(name)
        if digest and path and _keep(path):
            lines.append(f"{digest}  {path}\n")
    return "".join(lines)


def compose_runtime(debs: dict[str, Deb], groups: dict[str, list[str]], workdir: Path) -> list[tuple[str, Path]]:
    """One layer tar per package group; returns (group, path) in order."""
    layers = []
    for index, (group, names) in enumerate(groups.items()):
        path = workdir / f"layer-{index}-{group}.tar"
        with path.open("wb") as handle:
            writer = RootWriter(handle)
            if index == 0:
                _static_files(writer, debs)
            for name in names:
                deb = debs[name]
                if name not in ONLY_GENERATED:
                    _unpack(deb, writer)
                writer.file(f"var/lib/dpkg/status.d/{name}", deb.control().encode())
                shipped = shipped_md5sums(deb.md5sums(), name in ONLY_GENERATED)
                if shipped:
                    writer.file(f"var/lib/dpkg/status.d/{name}.md5sums", shipped.encode())
            if group == "python":
                writer.symlink("usr/bin/python3", "python3.13")
                writer.symlink("usr/bin/python", "python3.13")
            writer.close()
        layers.append((group, path))
    return layers


DPKG_FILES = ("var/lib/dpkg/status", "var/lib/dpkg/available")
DEBS_IN_STAGE = "var/cache/debs"


def compose_builder_stage(debs: dict[str, Deb], out: Path) -> None:
    """The builder's first stage, one tar: every package's files unpacked (merged /usr, nothing left out), an
    empty dpkg database, and the .deb files themselves under /var/cache/debs, for `dpkg --install` to run every
    maintainer script inside a container (imagebuild/bases.py): no package manager runs on the host."""
    with out.open("wb") as handle:
        writer = RootWriter(handle)
        for name in ("usr", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "var", "var/lib", "var/lib/dpkg",
                     "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/cache",
                     DEBS_IN_STAGE, "root"):
            writer.directory(name)
        writer.directory("tmp", 0o1777)
        for link in ("bin", "sbin", "lib", "lib64"):
            writer.symlink(link, f"usr/{link}")
        for name in DPKG_FILES:
            writer.file(name, b"")
        for name in sorted(debs):
            _unpack(debs[name], writer, keep=lambda _: True)
        for name in sorted(debs):
            writer.file(f"{DEBS_IN_STAGE}/{debs[name].path.name}", debs[name].path.read_bytes())
        writer.close()
