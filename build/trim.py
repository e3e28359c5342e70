"""Remove from an installed venv what the service never loads at run time. Runs in the builder image.

    python3.13 build/trim.py /opt/venv

Each rule prints what it removed. Kept on purpose: numpy.testing and numpy/_core/tests/_natype.py (imported at
run time by scipy and scikit-learn), every other .so unmodified (strip breaks numpy.libs/scipy.libs), dist-info.
Identical shared libraries (numpy.libs and scipy.libs vendor the same libgfortran) become relative symlinks.
The container tests run the whole service against the trimmed image: they are the proof of each rule.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

KEEP = {"numpy/_core/tests/__init__.py", "numpy/_core/tests/_natype.py"}
TEST_DIRS = {"tests", "test"}
SOURCE_SUFFIXES = {".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".f", ".f90", ".pyi", ".tmpl"}
# numpy's SIMD test harness: only numpy's own test suite imports it.
TEST_ONLY_MODULES = ("numpy/_core/_simd.cpython-*.so",)
# What service/docs.py serves (tests/test_build_tools.py keeps the two lists equal); source maps and the other
# Swagger UI builds go.
SWAGGER_UI_SERVED = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
SWAGGER_UI_ASSETS = "swagger_ui_bundle/vendor/swagger-ui-*"
VENDORED_LIBS = "*.libs/*"


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
    for pattern in TEST_ONLY_MODULES:
        for path in sorted(site.glob(pattern)):
            drop("test-only modules", path)
    for folder in sorted(site.glob(SWAGGER_UI_ASSETS)):
        for path in sorted(folder.iterdir()):
            if path.name not in SWAGGER_UI_SERVED:
                drop("Swagger UI files /docs does not serve", path)
    first_copy: dict[str, Path] = {}
    for path in sorted(site.glob(VENDORED_LIBS)):
        if path.is_symlink() or not path.is_file():
            continue
        kept = first_copy.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
        if kept != path:
            drop("duplicate vendored libraries (now symlinks)", path)
            path.symlink_to(os.path.relpath(kept, path.parent))
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
