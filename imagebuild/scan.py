"""What a model file needs, read without loading it: the modules its classes come from, the scikit-learn version
it was saved with, and whether it was fitted on a DataFrame.

Pickles name every class by module path: imagebuild/pickle_walk.py reads them from the opcodes, importing and
calling nothing. Compressed joblib files (zlib, gzip, bz2, xz) are inflated first. A skops file is a zip whose
schema.json names every type.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from collections.abc import Iterator

from modelcard.card import FORMATS

from . import BuildError
from .pickle_walk import walk


@dataclass
class Scan:
    """What the model file references."""

    format: str
    globals: set[tuple[str, str]] = field(default_factory=set)  # (module, name) of every class or function
    sklearn_version: str | None = None
    dataframe: bool = False  # some estimator recorded feature_names_in_: it was fitted on a DataFrame

    @property
    def modules(self) -> set[str]:
        return {module for module, _ in self.globals}


def format_of(path: Path) -> str:
    """joblib, pickle or skops, from the file name."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise BuildError(f"{path.name}: unknown model file type {path.suffix or '(none)'}; expected one of "
                         f"{', '.join(sorted(FORMATS))} (joblib.dump, pickle.dump or skops.io.dump)") from None


def _inflated(path: Path) -> IO[bytes]:
    """The file, or its inflated content for the compressions joblib writes."""
    with path.open("rb") as handle:
        head = handle.read(6)
    if head.startswith(b"\x1f\x8b"):
        return io.BytesIO(gzip.decompress(path.read_bytes()))
    if head.startswith(b"BZh"):
        return io.BytesIO(bz2.decompress(path.read_bytes()))
    if head.startswith(b"\xfd7zXZ\x00") or head.startswith(b"\x5d\x00\x00"):
        return io.BytesIO(lzma.decompress(path.read_bytes()))
    if head[:1] == b"\x78":
        return io.BytesIO(zlib.decompress(path.read_bytes()))
    if head.startswith(b"\x04\x22\x4d\x18"):
        raise BuildError(f"{path.name} is lz4-compressed; save it again with joblib.dump(model, path) or "
                         f"compress=3 (zlib)")
    if head.startswith(b"ZF"):
        raise BuildError(f"{path.name} uses joblib's pre-0.10 compressed format; load and save it again with a "
                         f"current joblib")
    return path.open("rb")


def _scan_skops(path: Path, scan: Scan) -> None:
    def visit(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from visit(value)
        elif isinstance(node, list):
            for value in node:
                yield from visit(value)

    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise BuildError(f"{path.name} is not a skops file ({exc})") from None
    for node in visit(schema):
        module, name = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(name, str):
            scan.globals.add((module, name))
        if node.get("__class__") == "dict" and isinstance(node.get("content"), dict):
            content = node["content"]
            version = content.get("_sklearn_version", {})
            if isinstance(version, dict) and isinstance(version.get("content"), str):
                text = version["content"]
                scan.sklearn_version = scan.sklearn_version or (json.loads(text) if version.get("is_json") else text)
            if "feature_names_in_" in content:
                scan.dataframe = True


def scan_model(path: Path) -> Scan:
    """The globals, scikit-learn version and DataFrame use recorded in a model file, never loading it."""
    scan = Scan(format=format_of(path))
    if scan.format == "skops":
        _scan_skops(path, scan)
        return scan
    with _inflated(path) as stream:
        try:
            found = walk(stream)
        except (ValueError, IndexError, KeyError, EOFError) as exc:
            raise BuildError(f"cannot read {path.name} as a {scan.format} file without loading it: {exc}; "
                             f"save it with joblib.dump(model, path) or pickle.dump") from None
    return Scan(scan.format, found.globals, found.sklearn_version, found.dataframe)
