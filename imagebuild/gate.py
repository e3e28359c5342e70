"""The size gate: the image must fit the budget kept in build/size-budget.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import ROOT, BuildError
from .report import mb

BUDGET = ROOT / "build" / "size-budget.json"


def budget(path: Path = BUDGET) -> int:
    return int(json.loads(path.read_text(encoding="utf-8"))["uncompressed_bytes"])


def check(report: dict[str, Any], limit: int, source: str = str(BUDGET.relative_to(ROOT))) -> None:
    """Raise BuildError naming the excess and the biggest contributors when the image is over budget."""
    if report["size"] <= limit:
        return
    layers = sorted(report["layers"], key=lambda row: -row["size"])[:2]
    contributors = [f"{p['name']} {mb(p['size'])}" for p in report["packages"][:3]]
    contributors += [f"layer '{row['created_by'][:50]}' {mb(row['size'])}" for row in layers]
    raise BuildError(f"image {report['image']} is {mb(report['size'])}, {mb(report['size'] - limit)} over the "
                     f"budget of {mb(limit)} ({source}); biggest: {', '.join(contributors)}; raise the budget of "
                     f"this build with --size-budget MB")
