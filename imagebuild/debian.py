"""Base images from Debian 13 packages alone, for machines that reach no container registry.

mmdebstrap resolves and downloads the packages (from the mirror in the host's apt configuration); every
.deb is checked against build/debian.lock.json, which pins versions and sha256 and is honoured on rebuild.
- builder: a minimal Debian 13 root with python3.13 (mmdebstrap --variant=apt), imported into Docker;
- runtime: a distroless-style root composed from an explicit package list (build/runtime-packages.txt):
  packages unpacked without maintainer scripts, passwd/group with nonroot 65532, a CA bundle, /tmp 1777,
  /var/lib/dpkg/status.d entries for scanners, no shell and no package manager; loaded as an image with
  one layer per package group and the distroless python3 configuration.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from service.bundle import sha256_file

from . import ROOT, BuildError
from .progress import say

SUITE = "trixie"
LOCK = ROOT / "build" / "debian.lock.json"
RUNTIME_LIST = ROOT / "build" / "runtime-packages.txt"
BUILDER_LIST = ROOT / "build" / "builder-packages.txt"
BASE_REPOSITORY = "sklearn-model-service-base"
USED_BASES = ROOT / ".cache" / "base-images.json"  # the bases this checkout built with, for remove_superseded
PYTHON = "/usr/bin/python3.13"
NONROOT = 65532
EPOCH = "1970-01-01T00:00:00Z"
MERGED_USR = ("bin/", "sbin/", "lib/", "lib64/")
# Documentation, and glibc's iconv modules (8 MB): Python's codecs never load them.
DROPPED_PREFIXES = ("usr/lib/x86_64-linux-gnu/gconv/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/locale/",
                    "usr/share/doc-base/", "usr/share/bug/", "etc/cron.", "etc/logrotate.d/")
RUNTIME_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "LANG=C.UTF-8"]
PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
          f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = f"root:x:0:\ntty:x:5:\nstaff:x:50:\nnogroup:x:65534:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\n" \
           "services: files\nethers: files\nrpc: files\n"


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
    temporary = LOCK.with_suffix(".tmp")
    temporary.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, LOCK)


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


def _pins(section: dict[str, Any], names: Iterable[str]) -> list[str]:
    packages = section.get("packages", {})
    return [f"{name}={packages[name]['version']}" if name in packages else name for name in names]


def _verify(debs: dict[str, Deb], section: dict[str, Any], what: str) -> None:
    for name, entry in section.get("packages", {}).items():
        deb = debs.get(name)
        if deb is None:
            continue
        if deb.version != entry["version"] or deb.sha256 != entry["sha256"]:
            raise BuildError(f"{what} package {name} {deb.version} has sha256 {deb.sha256[:16]}..., the lock pins "
                             f"{entry['version']} {entry['sha256'][:16]}...: refusing it (rerun with --update-lock "
                             f"to accept the mirror's current packages)")


def _entry(deb: Deb) -> dict[str, str]:
    return {"version": deb.version, "sha256": deb.sha256, "file": deb.path.name}


def resolve_section(kind: str, wanted: list[str], update: bool, lock: dict[str, Any]) -> dict[str, Any]:
    """Check the lock covers `wanted` (or re-resolve with update=True); returns the section."""
    section = lock.get(kind, {})
    missing = [name for name in wanted if name not in section.get("packages", {})]
    if missing and not update:
        raise BuildError(f"{LOCK.relative_to(ROOT)} has no {kind} entry for {', '.join(missing)}; "
                         f"rerun with --update-lock")
    return {} if update else section


def section_key(section: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- runtime root ---------------------------


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


def _keep(name: str) -> bool:
    """Drop documentation but each package's copyright file (licences travel with the binaries)."""
    if any(name.startswith(prefix) for prefix in DROPPED_PREFIXES):
        return False
    if name.startswith("usr/share/doc/"):
        return name.count("/") == 3 or name.endswith("/copyright")
    return True


def _unpack(deb: Deb, writer: RootWriter) -> None:
    """A package's files; hard links become copies, since their target may sit in another layer."""
    with deb.files() as archive:
        for member in archive.getmembers():
            name = _canonical(member.name)
            if not name or name in ("bin", "sbin", "lib", "lib64") or not _keep(name):
                continue  # base-files' merged-/usr links stand for the four top-level folders
            if member.islnk():
                source = archive.getmember(member.linkname)
                data = archive.extractfile(source).read()
                clone = tarfile.TarInfo(name)
                clone.size, clone.mode, clone.mtime = len(data), source.mode, source.mtime
                writer.add(clone, data)
                continue
            member.name = name
            writer.add(member, archive.extractfile(member).read() if member.isfile() else None)


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
                certificates.append(archive.extractfile(member).read())
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


def _docker_archive(layers: list[tuple[str, Path]], reference: str, out: Path, section: str) -> None:
    """A `docker load` archive with the distroless python3 :nonroot configuration, created at the epoch."""
    diff_ids, history = [], []
    with tarfile.open(out, "w") as archive:
        names = []
        for group, path in layers:
            digest = sha256_file(path)
            diff_ids.append(f"sha256:{digest}")
            history.append({"created": EPOCH, "created_by": f"debian {SUITE} packages: {group} ({section})"})
            names.append(f"{digest}/layer.tar")
            archive.add(path, arcname=names[-1])
        config = {
            "architecture": "amd64", "os": "linux", "created": EPOCH,
            "config": {"Env": RUNTIME_ENV, "Entrypoint": [PYTHON], "User": f"{NONROOT}",
                       "WorkingDir": "/home/nonroot", "Labels": {"base.lock": section}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": names}]).encode()
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _image_exists(client: Any, reference: str) -> bool:
    import docker.errors
    try:
        client.images.get(reference)
        return True
    except docker.errors.ImageNotFound:
        return False


# Bumped whenever the runtime root is composed differently from the same packages, so a base built the old way
# is not reused: 2 added each package's md5sums to /var/lib/dpkg/status.d.
RUNTIME_COMPOSITION = 2


def image_key(kind: str, section: dict[str, Any]) -> str:
    """The base image's tag: its lock section's key, and for the runtime the way its root is composed."""
    return section_key({**section, "composition": RUNTIME_COMPOSITION} if kind == "runtime" else section)


def _reference(kind: str, section: dict[str, Any]) -> str:
    return f"{BASE_REPOSITORY}/{kind}:{image_key(kind, section)}"


def _loaded(client: Any, kind: str, section: dict[str, Any]) -> str | None:
    """The base image built from this lock section, if Docker already has it."""
    reference = _reference(kind, section) if section else None
    return reference if reference and _image_exists(client, reference) else None


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


def runtime_base(client: Any, update: bool, lock: dict[str, Any]) -> str:
    """The local distroless-style runtime base, assembled unless an image of the same lock exists."""
    groups = read_groups(RUNTIME_LIST)
    wanted = [name for names in groups.values() for name in names]
    section = resolve_section("runtime", wanted, update, lock)
    if loaded := _loaded(client, "runtime", section):
        return loaded
    say(f"assembling the runtime base from {len(wanted)} Debian {SUITE} packages")
    with tempfile.TemporaryDirectory(prefix="runtime-base-") as temporary:
        workdir = Path(temporary)
        downloaded = {deb.name: deb for deb in mmdebstrap("extract", _pins(section, wanted), workdir / "root")}
        absent = [name for name in wanted if name not in downloaded]
        if absent:
            raise BuildError(f"{', '.join(absent)} not found in Debian {SUITE}: check {RUNTIME_LIST.relative_to(ROOT)}")
        _verify(downloaded, section, "runtime")
        section = {"packages": {name: _entry(downloaded[name]) for name in sorted(wanted)},
                   "not_shipped": sorted(set(downloaded) - set(wanted))}
        lock["runtime"] = section
        reference = _reference("runtime", section)
        layers = compose_runtime(downloaded, groups, workdir)
        archive = workdir / "image.tar"
        _docker_archive(layers, reference, archive, image_key("runtime", section))
        with archive.open("rb") as handle:
            client.images.load(handle.read())
    return reference


def builder_base(client: Any, update: bool, lock: dict[str, Any]) -> str:
    """The local Debian 13 builder base (mmdebstrap --variant=apt plus build/builder-packages.txt)."""
    wanted = read_groups(BUILDER_LIST)["packages"]
    section = resolve_section("builder", wanted, update, lock)
    if loaded := _loaded(client, "builder", section):
        return loaded
    say(f"assembling the builder base (Debian {SUITE}, python3.13)")
    with tempfile.TemporaryDirectory(prefix="builder-base-") as temporary:
        root = Path(temporary) / "root"
        everything = wanted + sorted(set(section.get("packages", {})) - set(wanted))
        debs = {deb.name: deb for deb in mmdebstrap("apt", _pins(section, everything), root)}
        _verify(debs, section, "builder")
        section = {"packages": {name: _entry(deb) for name, deb in sorted(debs.items())}}
        lock["builder"] = section
        reference = _reference("builder", section)
        shutil.rmtree(root / "var/cache/apt/archives")
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        archive = Path(temporary) / "root.tar"
        with tarfile.open(archive, "w") as tar:
            for entry in sorted(os.listdir(root)):
                tar.add(root / entry, arcname=entry)
        repository, tag = reference.rsplit(":", 1)
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag,
                                          changes=["ENV LANG=C.UTF-8", "CMD [\"/bin/bash\"]"])
    return reference
