"""Remove from an installed venv what the service never loads at run time. Runs in the builder image.

    python3.13 build/trim.py /opt/venv

Each rule prints what it removed. Kept on purpose: numpy.testing and numpy/_core/tests/_natype.py (imported at
run time by scipy and scikit-learn), every .so untouched (strip breaks numpy.libs/scipy.libs), dist-info.
The container tests run the whole service against the trimmed image: they are the proof of each rule.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = {"numpy/_core/tests/__init__.py", "numpy/_core/tests/_natype.py"}
TEST_DIRS = {"tests", "test"}
SOURCE_SUFFIXES = {".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".f", ".f90", ".pyi", ".tmpl"}


def size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def trim(site: Path) -> dict[str, tuple[int, int]]:
    removed: dict[str, list[int]] = {}

    def drop(rule: str, path: Path) -> None:
        count = removed.setdefault(rule, [0, 0])
        count[0] += 1
        count[1] += size(path)
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    for folder in sorted(site.rglob("*"), key=lambda p: len(p.parts)):
        if not folder.is_dir() or folder.name not in TEST_DIRS or not folder.exists():
            continue
        relative = folder.relative_to(site).as_posix()
        kept = [site / k for k in KEEP if k.startswith(relative + "/")]
        if kept:
            for child in folder.iterdir():
                if child not in kept:
                    drop("test suites", child)
        else:
            drop("test suites", folder)
    for path in sorted(site.rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            drop("sources, headers, stubs", path)
    return {rule: (count, nbytes) for rule, (count, nbytes) in removed.items()}


def main(argv: list[str]) -> int:
    venv = Path(argv[1])
    site = next(venv.glob("lib/python3.*/site-packages"))
    for script in venv.glob("bin/activate*"):
        script.unlink()
    total = 0
    for rule, (count, nbytes) in trim(site).items():
        total += nbytes
        print(f"trim: {rule}: {count} paths, {nbytes / 1e6:.1f} MB")
    print(f"trim: total {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
