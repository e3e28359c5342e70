#!/usr/bin/env python3
"""A pull request's size check (.github/workflows/ci.yml): build this checkout (its size gate applies), build the
base commit from a git worktree beside it, and print what changed; the markdown goes to the job summary and the
run fails when the image grew by more than --max-growth.

    python scripts/compare_sizes.py --base SHA [--max-growth MB] [--summary FILE] [--out DIR]

The base is built rather than fetched from an earlier run's artifact: no token or artifact API is needed, and the
base build reuses this build's caches (.cache/ is shared: wheels, Debian packages and bases are content-addressed)
and its unchanged layers. Its image, builder and build cache are removed afterwards. Progress on stderr; stdout
carries the diff.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagebuild import cli, size_diff  # noqa: E402 - once the repository is on sys.path


def build_base(sha: str, out: Path) -> Path | None:
    """The base commit's report, built in a worktree with its own scripts/build.py; None when it does not build
    (the reason on stderr)."""
    worktree = out / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(worktree), sha], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        (worktree / ".cache").symlink_to(ROOT / ".cache")
        report = out / "base.json"
        result = subprocess.run([sys.executable, "scripts/build.py", "--report", str(report), "--clean",
                                 "--tag", f"{cli.REPOSITORY}-base:{sha[:12]}"], cwd=worktree,
                                stdout=sys.stderr)  # its report is progress here
        if result.returncode != 0:
            print(f"compare-sizes: the base commit {sha[:12]} did not build (exit {result.returncode}): no diff",
                  file=sys.stderr)
            return None
        import docker
        docker.from_env().images.remove(json.loads(report.read_text())["image"])
        return report
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/compare_sizes.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, metavar="SHA", help="the commit to compare against")
    parser.add_argument("--max-growth", type=float, metavar="MB", help="fail when the image grew by more than MB")
    parser.add_argument("--summary", type=Path, metavar="FILE",
                        help="append the markdown here (default: $GITHUB_STEP_SUMMARY when set)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "compare", metavar="DIR",
                        help="where the two reports go (default: dist/compare)")
    args = parser.parse_args(argv)
    summary = size_diff.summary_file(args.summary)
    args.out.mkdir(parents=True, exist_ok=True)
    head = args.out / "head.json"
    with contextlib.redirect_stdout(sys.stderr):  # the build's report is progress here; stdout is the diff's
        if cli.main(["--report", str(head)]) != 0:  # its error lines are already on stderr
            return 1
    base = build_base(args.base, args.out)
    if base is None:
        if summary is not None:
            with summary.open("a", encoding="utf-8") as handle:
                handle.write(f"### Image size\n\nThe base commit `{args.base[:12]}` did not build: no size diff.\n")
        return 0
    return size_diff.report_diff(base, head, summary, args.max_growth)


if __name__ == "__main__":
    sys.exit(main())
