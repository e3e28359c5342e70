"""`docker load` archives written from a config and layer tars, and `docker save` read as a stream."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Iterator


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


def config_bytes(config: dict[str, Any]) -> bytes:
    """The config as the archive stores it: its sha256 is the image id `docker load` gives."""
    return json.dumps(config, sort_keys=True).encode()


def image_id(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(config_bytes(config)).hexdigest()


def write(out: Path, config: dict[str, Any], layers: list[tuple[str, Path]], reference: str) -> None:
    """A `docker load` archive: each layer (its diff_id, its tar) under its digest, the config, the manifest."""
    data = config_bytes(config)
    config_name = hashlib.sha256(data).hexdigest() + ".json"
    names = [f"{digest.removeprefix('sha256:')}/layer.tar" for digest, _ in layers]
    with tarfile.open(out, "w") as archive:
        for name, (_, path) in zip(names, layers):
            archive.add(path, arcname=name)
        manifest = json.dumps([{"Config": config_name, "RepoTags": [reference], "Layers": names}]).encode()
        for name, payload in ((config_name, data), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def json_of(handle: Any) -> Any:
    return json.loads(handle.read())
