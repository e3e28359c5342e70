"""The size gate: the image must fit the budget kept in build/size-budget.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import ROOT, BuildError
from .platforms import AMD64, Platform
from .report import mb

BUDGET = ROOT / "build" / "size-budget.json"


def budget(path: Path = BUDGET, grpc: bool = False, compressed: bool = False, platform: Platform = AMD64) -> int:
    """The default image's budget, uncompressed or (`compressed`) gzip; with `grpc`, plus the allowance for
    --grpc's packages; for a platform other than amd64, plus that platform's allowance if it has one (arm64's
    wheels are larger uncompressed, not gzip)."""
    kept = json.loads(path.read_text(encoding="utf-8"))
    prefix = "gzip_" if compressed else ""
    allowance = int(kept.get(f"{platform.debian}_{prefix}bytes", 0)) if platform != AMD64 else 0
    return int(kept[f"{prefix or 'uncompressed_'}bytes"]) + (int(kept[f"grpc_{prefix}bytes"]) if grpc else 0) \
        + allowance


def check(report: dict[str, Any], limit: int, source: str = str(BUDGET.relative_to(ROOT)),
          compressed_limit: int | None = None) -> None:
    """Raise BuildError naming the excess and the biggest contributors when the image is over budget
    (uncompressed, or gzip as a registry stores it when `compressed_limit` is given)."""
    if compressed_limit is not None and report["compressed_size"] > compressed_limit:
        raise BuildError(f"image {report['image']} is {mb(report['compressed_size'])} gzip, "
                         f"{mb(report['compressed_size'] - compressed_limit)} over the gzip budget of "
                         f"{mb(compressed_limit)} ({source}); its uncompressed size is {mb(report['size'])}")
    if report["size"] <= limit:
        return
    layers = sorted(report["layers"], key=lambda row: -row["size"])[:2]
    contributors = [f"{p['name']} {mb(p['size'])}" for p in report["packages"][:3]]
    contributors += [f"layer '{row['created_by'][:50]}' {mb(row['size'])}" for row in layers]
    raise BuildError(f"image {report['image']} is {mb(report['size'])}, {mb(report['size'] - limit)} over the "
                     f"budget of {mb(limit)} ({source}); biggest: {', '.join(contributors)}; raise the budget of "
                     f"this build with --size-budget MB")
