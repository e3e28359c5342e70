"""What the image weighs: uncompressed, gzip and zstd sizes, a layer table, and the largest Python packages.
Layer measurements are cached by layer digest in .cache/layer-sizes.json."""
from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ROOT, archive, write_atomic
from .reproducible import ORIGIN

SITE_PACKAGES = re.compile(r"^opt/venv/lib/python3\.\d+/site-packages/([^/]+)")
CACHE = ROOT / ".cache" / "layer-sizes.json"
CACHE_VERSION = 4  # bumped whenever a layer or an image is measured or recorded differently
CACHED_IMAGES = 20
INPUTS = {"dataframe": "a DataFrame", "texts": "a list of texts", "array": "an array"}  # the card's "input"


def package_of(entry: str) -> str:
    """site-packages entry -> distribution-ish name: numpy.libs and numpy-2.4.6.dist-info count as numpy."""
    name = re.sub(r"(\.libs|-[^-]+\.dist-info)$", "", entry)
    return name.lower().replace("_", "-")


def _layer_stats(data: bytes) -> dict[str, Any]:
    """One layer tar: its size, the bytes of its files and links' targets, its gzip blob's size and digest (the
    blob a push sends: archive.gzipped), zstd size (level 3, the default of registries and clients that push zstd)
    and bytes per site-packages package."""
    import zstandard
    with open(os.devnull, "wb") as nowhere:
        gzip_digest, gzipped = archive.gzipped(io.BytesIO(data), nowhere)
    packages: dict[str, int] = {}
    content = 0
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        for member in layer:
            content += member.size if member.isfile() else len(member.linkname) if member.issym() else 0
            match = SITE_PACKAGES.match(member.name.lstrip("./"))
            if match and member.isfile():
                name = package_of(match.group(1))
                packages[name] = packages.get(name, 0) + member.size
    return {"size": len(data), "content": content, "gzip": gzipped, "gzip_digest": gzip_digest,
            "zstd": len(zstandard.ZstdCompressor(level=3).compress(data)), "packages": packages}


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache, or an empty one when it is missing, unreadable or of another version."""
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    return cache if cache.get("version") == CACHE_VERSION else {"version": CACHE_VERSION, "layers": {}, "images": {}}


def _write_cache(path: Path, cache: dict[str, Any]) -> None:
    """Only the layers of the images measured last (bounded; the newest is last), written atomically."""
    images = dict(list(cache["images"].items())[-CACHED_IMAGES:])
    wanted = {digest for entry in images.values() for digest, _ in entry["layers"]}
    trimmed = {"version": CACHE_VERSION, "layers": {d: m for d, m in cache["layers"].items() if d in wanted},
               "images": images}
    write_atomic(path, json.dumps(trimmed))


def layer_history(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(diff_id, created_by) per layer, bottom up, from an image config."""
    steps = [entry for entry in config.get("history", []) if not entry.get("empty_layer")]
    return [(digest, re.sub(r"^/bin/sh -c (#\(nop\) )?", "", entry.get("created_by", "")).strip())
            for digest, entry in zip(config["rootfs"]["diff_ids"], steps, strict=True)]


def _measure_saved(image: Any, known: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`docker save` read once (imagebuild/archive.py: any engine's layout): each layer measured only if the
    cache does not know it; returns the new measurements and the image's entry for the cache."""
    measured: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="report-") as temporary:
        with archive.saved(image) as stream:
            saved = archive.read_saved(stream, Path(temporary))
        for digest, path in saved.layers:
            if digest not in known and digest not in measured:
                measured[digest] = _layer_stats(path.read_bytes())
    return measured, _entry(saved.config_digest, saved.config)


def _entry(config_digest: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"id": config_digest, "layers": layer_history(config)}


def remember(engine_id: str, config: dict[str, Any], layers: list[tuple[str, Path]], cache_path: Path = CACHE) -> None:
    """Measure an image whose layers are at hand as files (imagebuild/reproducible.py writes them) into the cache,
    so that analyze() need not `docker save` it again. `config` is the one the image was loaded with."""
    cache = _read_cache(cache_path)
    for digest, path in layers:
        if digest not in cache["layers"]:
            cache["layers"][digest] = _layer_stats(path.read_bytes())
    cache["images"].pop(engine_id, None)
    cache["images"][engine_id] = _entry(archive.image_id(config), config)
    _write_cache(cache_path, cache)


@dataclass(frozen=True)
class MeasuredBlob:
    """A measured layer's gzip blob, what a push sends for it, and where it was pushed before ("host/repository",
    newest last): a registry that has it in one repository can mount it into another without an upload."""

    digest: str
    size: int
    pushed_to: tuple[str, ...] = ()


PUSHED_TO_KEPT = 4  # repositories remembered per layer


def measured_blobs(cache_path: Path = CACHE) -> dict[str, MeasuredBlob]:
    """diff_id -> the gzip blob of each layer measured."""
    return {digest: MeasuredBlob(layer["gzip_digest"], layer["gzip"], tuple(layer.get("pushed_to", ())))
            for digest, layer in _read_cache(cache_path)["layers"].items()}


def remember_pushed(diff_ids: list[str], repository: str, cache_path: Path = CACHE) -> None:
    """Note that the registry repository "host/name" now has these layers' blobs."""
    cache = _read_cache(cache_path)
    for digest in diff_ids:
        layer = cache["layers"].get(digest)
        if layer is not None:
            earlier = [entry for entry in layer.get("pushed_to", []) if entry != repository]
            layer["pushed_to"] = [*earlier, repository][-PUSHED_TO_KEPT:]
    _write_cache(cache_path, cache)


def analyze(client: Any, reference: str, cache_path: Path = CACHE) -> dict[str, Any]:
    """The report; layers are measured once per digest (a rebuild re-measures only the layers that changed, and
    an image measured before is not saved again). Its `id` is the config's digest, the image id Docker's classic
    store shows; with the containerd image store the engine names the image by its manifest's digest instead
    (`engine_id`)."""
    image = client.images.get(reference)
    cache = _read_cache(cache_path)
    entry = cache["images"].get(image.id)
    if entry is None or any(digest not in cache["layers"] for digest, _ in entry["layers"]):
        measured, entry = _measure_saved(image, cache["layers"])
        cache["layers"].update(measured)
    cache["images"].pop(image.id, None)
    cache["images"][image.id] = entry
    _write_cache(cache_path, cache)
    rows: list[dict[str, Any]] = []
    packages: dict[str, int] = {}
    for digest, created_by in entry["layers"]:
        layer = cache["layers"][digest]
        for name, nbytes in layer["packages"].items():
            packages[name] = packages.get(name, 0) + nbytes
        rows.append({"size": layer["size"], "compressed": layer["gzip"], "zstd": layer["zstd"],
                     "created_by": created_by, "digest": digest})
    for row in rows:
        row["share"] = row["size"] / max(1, sum(r["size"] for r in rows))
    return {
        "image": reference,
        "id": entry["id"],
        "engine_id": image.id,
        # files' bytes and links' targets: what Docker's classic store reports as the image's Size, counted here
        # from the layers so that every engine and store gives the same figure (the containerd store's Size
        # counts the layer tars instead, and `docker images` there adds the unpacked snapshots)
        "size": sum(cache["layers"][digest]["content"] for digest, _ in entry["layers"]),
        "compressed_size": sum(row["compressed"] for row in rows),
        "zstd_size": sum(row["zstd"] for row in rows),
        "layers": rows,
        # every site-packages entry, largest first (the printed report shows the largest; a size diff needs all)
        "packages": sorted(({"name": n, "size": s} for n, s in packages.items()), key=lambda p: -p["size"]),
        "labels": image.attrs["Config"].get("Labels") or {},
    }


SHOWN_PACKAGES = 12  # the printed report's "largest packages"


def mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def render(report: dict[str, Any]) -> str:
    lines = [
        f"image       {report['image']}",
        f"id          {report['id']}",
        f"size        {mb(report['size'])} uncompressed (files and links, as `docker images` shows with the "
        f"classic store)",
        f"compressed  {mb(report['compressed_size'])} gzip, {mb(report['zstd_size'])} zstd (layers as a registry "
        f"stores them)",
    ]
    if "bases" in report:
        lines.append(f"base        {report['bases']['runtime']} (from {report['bases']['runtime_from']})")
    if "source_date_epoch" in report:
        epoch = report["source_date_epoch"]
        lines.append(f"epoch       SOURCE_DATE_EPOCH={epoch['seconds']} ({epoch['time']}, {ORIGIN[epoch['source']]}): "
                     f"the image's created time (its files' times are 0)")
    if "debug" in report:
        lines.append(f"debug twin  {report['debug']['image']} {report['debug']['id']} (a shell at /busybox/sh)")
    if "budget" in report:
        budget = report["budget"]
        lines.append(f"budget      {mb(budget['limit'])} uncompressed ({report['size'] / budget['limit']:.0%} used, "
                     f"{budget.get('source', 'build/size-budget.json')})")
        if "compressed_limit" in budget:
            lines.append(f"            {mb(budget['compressed_limit'])} gzip "
                         f"({report['compressed_size'] / budget['compressed_limit']:.0%} used)")
    if "model" in report:
        model = report["model"]
        lines += ["", f"model       {model['name']} {model['version']}: {model['task']}, "
                      f"{INPUTS.get(model['input'], 'an array')} of "
                      f"{len(model['features'])} features, scikit-learn {model['sklearn_version']}"]
        for feature in model["features"]:
            extra = f", {feature['values']} values{' (closed)' if feature.get('closed') else ''}" \
                if "values" in feature else ""
            lines.append(f"  {feature['name']:<24} {feature['type']}{', nullable' if feature['nullable'] else ''}"
                         f"{extra}")
        lines += [f"  note: {note}" for note in model["notes"]]
    if "pruned" in report:
        pruned = report["pruned"]
        largest = ", ".join(f"{name} {mb(nbytes)}" for name, nbytes in list(pruned["packages"].items())[:6])
        lines += ["", f"pruned      {pruned['files']} files, {mb(pruned['bytes'])} left out (--prune): {largest}, "
                      f"standard library {mb(pruned['standard_library'])}"]
    lines += ["", "layers, bottom up:", f"  {'size':>9} {'gzip':>9} {'zstd':>9} {'share':>6}  created by"]
    for row in report["layers"]:
        created_by = row["created_by"] if len(row["created_by"]) <= 80 else row["created_by"][:77] + "..."
        lines.append(f"  {mb(row['size']):>9} {mb(row['compressed']):>9} {mb(row['zstd']):>9} {row['share']:>6.1%}"
                     f"  {created_by}")
    lines += ["", "largest packages in /opt/venv:"]
    lines += [f"  {mb(p['size']):>9}  {p['name']}" for p in report["packages"][:SHOWN_PACKAGES]]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    write_atomic(path, json.dumps(report, indent=2) + "\n")
