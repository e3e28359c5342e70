"""What the image weighs: uncompressed and gzip sizes, a layer table, and the largest Python packages."""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Any, Iterator

SITE_PACKAGES = re.compile(r"^opt/venv/lib/python3\.\d+/site-packages/([^/]+)")


class _ChunkReader(io.RawIOBase):
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


def package_of(entry: str) -> str:
    """site-packages entry -> distribution-ish name: numpy.libs and numpy-2.4.6.dist-info count as numpy."""
    name = re.sub(r"(\.libs|-[^-]+\.dist-info)$", "", entry)
    return name.lower().replace("_", "-")


def _layer_stats(data: bytes) -> tuple[int, dict[str, int]]:
    """gzip size (level 6, what docker push uses) and bytes per site-packages package."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    gzipped = 0
    for start in range(0, len(data), 1 << 20):
        gzipped += len(compressor.compress(data[start:start + (1 << 20)]))
    gzipped += len(compressor.flush())
    packages: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        for member in layer:
            match = SITE_PACKAGES.match(member.name.lstrip("./"))
            if match and member.isfile():
                name = package_of(match.group(1))
                packages[name] = packages.get(name, 0) + member.size
    return gzipped, packages


def analyze(client: Any, reference: str) -> dict[str, Any]:
    image = client.images.get(reference)
    layers: dict[str, tuple[int, int, dict[str, int]]] = {}
    manifest: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(iter(image.save(named=False)))), mode="r|") as saved:
        for member in saved:
            if not member.isfile():
                continue
            data = saved.extractfile(member).read()
            if member.name.endswith("layer.tar"):
                layers[member.name] = (len(data), *_layer_stats(data))
            elif member.name == "manifest.json":
                manifest = json.loads(data)
            elif member.name.endswith(".json") and "/" not in member.name:
                config = json.loads(data)
    ordered = iter(manifest[0]["Layers"])
    rows, packages = [], {}
    for entry in config.get("history", []):
        if entry.get("empty_layer"):
            continue
        size, gzipped, found = layers[next(ordered)]
        for name, nbytes in found.items():
            packages[name] = packages.get(name, 0) + nbytes
        created_by = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", entry.get("created_by", "")).strip()
        rows.append({"size": size, "compressed": gzipped, "created_by": created_by})
    total = image.attrs["Size"]
    for row in rows:
        row["share"] = row["size"] / max(1, sum(r["size"] for r in rows))
    return {
        "image": reference,
        "id": image.id,
        "size": total,
        "compressed_size": sum(row["compressed"] for row in rows),
        "layers": rows,
        "packages": sorted(({"name": n, "size": s} for n, s in packages.items()), key=lambda p: -p["size"])[:12],
        "labels": image.attrs["Config"].get("Labels") or {},
    }


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"image       {report['image']}",
        f"id          {report['id']}",
        f"size        {mb(report['size'])} uncompressed (as `docker images` shows)",
        f"compressed  {mb(report['compressed_size'])} (gzip layers, as a registry stores them)",
    ]
    if "budget" in report:
        budget = report["budget"]
        lines.append(f"budget      {mb(budget['limit'])} uncompressed ({report['size'] / budget['limit']:.0%} used, "
                     f"{budget.get('source', 'build/size-budget.json')})")
    if "model" in report:
        model = report["model"]
        lines += ["", f"model       {model['name']} {model['version']}: {model['task']}, "
                      f"{'a DataFrame' if model['input'] == 'dataframe' else 'an array'} of "
                      f"{len(model['features'])} features, scikit-learn {model['sklearn_version']}"]
        for feature in model["features"]:
            extra = f", {feature['values']} values{' (closed)' if feature.get('closed') else ''}" \
                if "values" in feature else ""
            lines.append(f"  {feature['name']:<24} {feature['type']}{', nullable' if feature['nullable'] else ''}"
                         f"{extra}")
        lines += [f"  note: {note}" for note in model["notes"]]
    lines += ["", "layers, bottom up:", f"  {'size':>9} {'gzip':>9} {'share':>6}  created by"]
    for row in report["layers"]:
        created_by = row["created_by"] if len(row["created_by"]) <= 90 else row["created_by"][:87] + "..."
        lines.append(f"  {mb(row['size']):>9} {mb(row['compressed']):>9} {row['share']:>6.1%}  {created_by}")
    lines += ["", "largest packages in /opt/venv:"]
    lines += [f"  {mb(p['size']):>9}  {p['name']}" for p in report["packages"]]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    """Atomic: a reader never sees half a report. Missing parent folders are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
