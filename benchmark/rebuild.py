"""How long `scripts/build.py` takes after a change to service/ (issue 13: at most 15 s), measured, not gated.

    python -m benchmark.rebuild [--runs N]

Builds once as the checkout is (warm), then N times with a comment appended to service/__init__.py (each run a
new change, so Docker's cache cannot hide the service layers), restoring the file and building once more, so the
image is the checkout's again. Prints one JSON object: every run's seconds and the best.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHANGED = ROOT / "service" / "__init__.py"


def build() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build.py")], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    original = CHANGED.read_bytes()
    warm = build()
    runs = []
    try:
        for run in range(args.runs):
            CHANGED.write_bytes(original + f"# rebuild probe {run} {time.time_ns()}\n".encode())
            runs.append(round(build(), 2))
    finally:
        CHANGED.write_bytes(original)
        build()
    print(json.dumps({"warm_build_seconds": round(warm, 2), "rebuild_seconds": runs, "best": min(runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
