"""`docker load` archives written from a config and layer tars, and `docker save` archives read by what they
declare, whichever engine wrote them:

- Docker 20.10 to 24 (the legacy layout): `manifest.json` names `<id>.json` as the config and `<id>/layer.tar`
  for each layer;
- Docker 25 and later (an OCI image layout): `manifest.json` names blobs, `blobs/sha256/<hex>`; `index.json`
  leads to the same through an OCI manifest, and is what is read when there is no `manifest.json`. With the
  containerd image store a layer blob may be compressed (gzip or zstd), so a layer's diff_id is the digest of its
  uncompressed tar, not of its blob.

The members come in the engine's order (a layout's `manifest.json` comes last), so `read_saved` keeps every file
on disk and resolves the names once the whole archive has been read.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast
from collections.abc import Iterator

from . import BuildError


class ChunkReader(io.RawIOBase):
    """A file object over the byte chunks docker-py yields, so tarfile can stream `docker save`."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        count = min(len(buffer), len(self.pending))
        buffer[:count], self.pending = self.pending[:count], self.pending[count:]
        return count


def saved(image: Any) -> tarfile.TarFile:
    """`docker save` of one image as a tar read in one pass (members in the engine's order)."""
    return tarfile.open(fileobj=io.BufferedReader(ChunkReader(iter(image.save(named=False)))), mode="r|")


@dataclass(frozen=True)
class Saved:
    """An image from `docker save`: its config as stored, and each layer's diff_id and uncompressed tar, bottom
    up. The config's digest is the image id of Docker's classic store, whatever the engine calls the image."""

    config_bytes: bytes
    layers: list[tuple[str, Path]]

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_bytes)

    @property
    def config_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_bytes).hexdigest()


class ArchiveError(BuildError):
    """A `docker save` archive that does not hold what its manifest or index says."""


GZIP, ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def _member_file(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> IO[bytes]:
    """A regular file of a tar archive, to read (BuildError for a folder, a device or a missing link)."""
    handle = archive.extractfile(member)
    if handle is None:
        raise BuildError(f"{member if isinstance(member, str) else member.name}: not a regular file in its archive")
    return handle


def member_bytes(archive: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    """A regular file's bytes from a tar archive."""
    with _member_file(archive, member) as handle:
        return handle.read()


class Digesting:
    """A writable file that also takes the sha256 and the size of what is written through it, so that a file is
    hashed as it is written instead of read again."""

    def __init__(self, out: BinaryIO):
        self.out, self.sha256, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


def gzipped(source: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    """`source` as the blob a push sends, written to `out`: gzip level 6, no file name, time 0 (Python's zlib, as
    `docker push` on the classic store compresses); returns the blob's digest and size. The build measures each
    layer this way (imagebuild/report.py) and the push sends these bytes, so the two agree on the digest."""
    digesting = Digesting(out)
    with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=digesting, mtime=0) as compressed:
        shutil.copyfileobj(source, compressed, 1 << 20)
    return digesting.digest, digesting.size


def read_saved(stream: tarfile.TarFile, workdir: Path) -> Saved:
    """Read a `docker save` archive into `workdir`: legacy or OCI layout, layers plain or compressed."""
    files: dict[str, tuple[Path, str]] = {}  # member name -> (file, sha256 of its bytes)
    for member in stream:
        if member.isfile():
            path = workdir / f"member-{len(files)}"
            with path.open("wb") as out:
                digesting = Digesting(out)
                shutil.copyfileobj(_member_file(stream, member), digesting, 1 << 20)
            files[member.name] = (path, digesting.digest)
    config_name, layer_names = _declared(files)
    layers = [_uncompressed(*_member(files, name), workdir / f"layer-{index}.tar")
              for index, name in enumerate(layer_names)]
    return Saved(_member(files, config_name)[0].read_bytes(), layers)


def _member(files: dict[str, tuple[Path, str]], name: str) -> tuple[Path, str]:
    try:
        return files[name]
    except KeyError:
        raise ArchiveError(f"the archive declares {name} but holds no such file") from None


def _declared(files: dict[str, tuple[Path, str]]) -> tuple[str, list[str]]:
    """The config's and the layers' member names, from manifest.json, else from index.json."""
    if "manifest.json" in files:
        manifest = json.loads(files["manifest.json"][0].read_bytes())
        if len(manifest) != 1:
            raise ArchiveError(f"manifest.json lists {len(manifest)} images; one was saved")
        return manifest[0]["Config"], list(manifest[0]["Layers"])
    if "index.json" not in files:
        raise ArchiveError("neither manifest.json nor index.json: not a `docker save` archive")
    document = json.loads(files["index.json"][0].read_bytes())
    while "manifests" in document:  # an index (of an index...): its first manifest
        document = json.loads(_member(files, _blob(document["manifests"][0]["digest"]))[0].read_bytes())
    return _blob(document["config"]["digest"]), [_blob(layer["digest"]) for layer in document["layers"]]


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _uncompressed(path: Path, digest: str, out: Path) -> tuple[str, Path]:
    """(diff_id, tar) of a layer blob whose sha256 is `digest`: the blob itself when it is a plain tar, else its
    decompressed copy."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if not (magic.startswith(GZIP) or magic == ZSTD):
        return digest, path
    with path.open("rb") as raw, out.open("wb") as plain:
        digesting = Digesting(plain)
        if magic == ZSTD:
            import zstandard
            zstandard.ZstdDecompressor().copy_stream(raw, cast(BinaryIO, digesting))  # it only calls write()
        else:
            shutil.copyfileobj(gzip.GzipFile(fileobj=raw), digesting, 1 << 20)
    path.unlink()
    return digesting.digest, out


def config_bytes(config: dict[str, Any]) -> bytes:
    """The config as the archive stores it: its sha256 is the image id `docker load` gives."""
    return json.dumps(config, sort_keys=True).encode()


def image_id(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(config_bytes(config)).hexdigest()


def load(client: Any, out: Path, config: dict[str, Any], layers: list[tuple[str, Path]], reference: str,
         what: str) -> str:
    """Write the `docker load` archive at `out` and load it as `reference`; returns the engine's id of it. A refusal
    is one line naming `what` was loaded."""
    import docker.errors
    write(out, config, layers, reference)
    with out.open("rb") as handle:
        try:
            client.images.load(handle)
        except docker.errors.APIError as exc:
            raise BuildError(f"docker load of {what} failed: {exc.explanation or exc}") from None
    return client.images.get(reference).id


def write(out: Path, config: dict[str, Any], layers: list[tuple[str, Path]], reference: str) -> None:
    """A `docker load` archive: each layer (its diff_id, its tar) under its digest, the config, the manifest."""
    data = config_bytes(config)
    config_name = hashlib.sha256(data).hexdigest() + ".json"
    names = [f"{digest.removeprefix('sha256:')}/layer.tar" for digest, _ in layers]
    with tarfile.open(out, "w") as archive:
        for name, (_, path) in zip(names, layers, strict=True):
            archive.add(path, arcname=name)
        manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": names}]).encode()
        for name, payload in ((config_name, data), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))

