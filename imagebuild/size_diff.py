"""What changed between two build reports (issue 26): total sizes, each layer, each package in /opt/venv, with
deltas; as a table for the terminal and as GitHub-flavoured markdown for a pull request's job summary. The growth
gate fails a build that grew by more than a set amount.

    sms-report diff BASE.json HEAD.json [--markdown FILE] [--max-growth MB]

Layers are matched by what created them (the n-th layer of a given command against the n-th of the same
command), so a layer that appears or goes away shows as added or removed; packages by name.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from . import BuildError
from .report import mb

TOTALS = (("size", "uncompressed"), ("compressed_size", "gzip"), ("zstd_size", "zstd"))


def _keyed_layers(report: dict[str, Any]) -> dict[tuple[str, int], int]:
    seen: Counter[str] = Counter()
    keyed = {}
    for layer in report["layers"]:
        keyed[(layer["created_by"], seen[layer["created_by"]])] = layer["size"]
        seen[layer["created_by"]] += 1
    return keyed


def _rows(base: dict[Any, int], head: dict[Any, int]) -> list[dict[str, Any]]:
    """One row per key of either side, in head's order then base's leftovers; unchanged rows included."""
    keys = list(head) + [key for key in base if key not in head]
    return [{"key": key, "base": base.get(key), "head": head.get(key),
             "delta": (head.get(key) or 0) - (base.get(key) or 0)} for key in keys]


def diff(base: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """The differences between two reports (imagebuild/report.py's JSON)."""
    return {
        "base": base["image"], "head": head["image"],
        "totals": [{"key": label, "base": base.get(field), "head": head.get(field),
                    "delta": (head.get(field) or 0) - (base.get(field) or 0)} for field, label in TOTALS],
        "layers": _rows(_keyed_layers(base), _keyed_layers(head)),
        "packages": _rows({p["name"]: p["size"] for p in base["packages"]},
                          {p["name"]: p["size"] for p in head["packages"]}),
    }


def _signed(nbytes: int) -> str:
    """A change: 0, in kB below 0.1 MB (a code change), else in MB."""
    if nbytes == 0:
        return "0"
    return f"{nbytes / 1e3:+.1f} kB" if abs(nbytes) < 100_000 else f"{'+' if nbytes > 0 else '-'}{mb(abs(nbytes))}"


def _cell(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 1e3:.1f} kB" if nbytes < 100_000 else mb(nbytes)


def _layer_name(key: tuple[str, int]) -> str:
    created_by, occurrence = key
    name = created_by if len(created_by) <= 60 else created_by[:57] + "..."
    return f"{name} ({occurrence + 1})" if occurrence else name


def render_text(changes: dict[str, Any]) -> str:
    lines = [f"{changes['base']} -> {changes['head']}", ""]
    for title, rows, name in (("total", changes["totals"], str), ("layers", changes["layers"], _layer_name),
                              ("packages", changes["packages"], str)):
        lines.append(f"{title}:")
        for row in rows:
            if title == "total" or row["delta"]:
                lines.append(f"  {_cell(row['base']):>9} -> {_cell(row['head']):>9} {_signed(row['delta']):>10}  "
                             f"{name(row['key'])}")
        unchanged = sum(1 for row in rows if not row["delta"])
        if title != "total" and unchanged:
            lines.append(f"  ({unchanged} unchanged)")
    return "\n".join(lines)


def render_markdown(changes: dict[str, Any]) -> str:
    total = changes["totals"][0]
    lines = [f"### Image size: {_cell(total['head'])} ({_signed(total['delta'])})", "",
             f"`{changes['base']}` → `{changes['head']}`", "",
             "| | base | head | change |", "|---|---:|---:|---:|"]
    lines += [f"| {row['key']} | {_cell(row['base'])} | {_cell(row['head'])} | {_signed(row['delta'])} |"
              for row in changes["totals"]]
    for title, rows, name in (("Layers", changes["layers"], _layer_name), ("Packages", changes["packages"], str)):
        changed = [row for row in rows if row["delta"]]
        lines += ["", f"<details><summary>{title}: {len(changed)} changed</summary>", "",
                  "| | base | head | change |", "|---|---:|---:|---:|"]
        lines += [f"| `{name(row['key'])}` | {_cell(row['base'])} | {_cell(row['head'])} | {_signed(row['delta'])} |"
                  for row in changed]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def check_growth(changes: dict[str, Any], max_growth_mb: float) -> None:
    """BuildError when the uncompressed size grew by more than `max_growth_mb`."""
    grown = changes["totals"][0]["delta"]
    if grown > max_growth_mb * 1e6:
        largest = sorted((row for row in changes["packages"] if row["delta"] > 0), key=lambda row: -row["delta"])[:3]
        because = ", ".join(f"{row['key']} {_signed(row['delta'])}" for row in largest) or "no listed package"
        raise BuildError(f"image {changes['head']} grew by {mb(grown)} against {changes['base']}, more than "
                         f"--max-growth {max_growth_mb:g} MB; largest growth: {because}")


def read(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: not a readable build report ({exc})") from None
    if not isinstance(report, dict) or not {"image", "size", "layers", "packages"} <= set(report):
        raise BuildError(f"{path}: not a build report (written by scripts/build.py --report)")
    return report


def summary_file(given: Path | None) -> Path | None:
    """Where the markdown goes: `given`, else the job summary ($GITHUB_STEP_SUMMARY) when running in a workflow."""
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return given or (Path(step_summary) if step_summary else None)


def compare(base_path: Path, head: dict[str, Any], markdown: Path | None) -> dict[str, Any]:
    """The diff of `head` against the report at `base_path`, its markdown appended to `markdown` (a job summary
    file collects several steps' parts)."""
    changes = diff(read(base_path), head)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        with markdown.open("a", encoding="utf-8") as handle:
            handle.write(render_markdown(changes))
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sms-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    compared = commands.add_parser("diff", help="what changed between two build reports")
    compared.add_argument("base", type=Path, help="the report to compare against (the base branch's)")
    compared.add_argument("head", type=Path, help="the new report")
    compared.add_argument("--markdown", type=Path, metavar="FILE",
                          help="append the diff as GitHub-flavoured markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)")
    compared.add_argument("--max-growth", type=float, metavar="MB",
                          help="fail (exit 1) when the image grew by more than MB")
    args = parser.parse_args(argv)
    return report_diff(args.base, args.head, args.markdown, args.max_growth)


def report_diff(base: Path, head: Path, markdown: Path | None, max_growth: float | None) -> int:
    """Print the diff of two reports (its markdown appended to `markdown`), then apply the growth gate; the exit
    code, 1 with one error line."""
    try:
        changes = compare(base, read(head), markdown)
        print(render_text(changes))
        if max_growth is not None:
            check_growth(changes, max_growth)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
