"""Remove from an installed venv what the service never loads at run time, and write the standard library as
sourceless bytecode for the runtime image. Runs in the builder image.

    python3.13 build/trim.py /opt/venv /staging/stdlib [--tools aarch64-linux-gnu- --sysconfigdata FILE]

For another platform's venv (a cross build, imagebuild/cross.py), `--tools` names that platform's binutils (nm,
readelf and strip read and write only their own machine's files) and `--sysconfigdata` its
_sysconfigdata__linux_<triplet>.py, which stands for this builder's own in the standard library's bytecode (the
one module of the standard library that differs between platforms).

Each rule prints what it saved. Kept on purpose: numpy.testing and numpy/_core/tests/_natype.py (imported at
run time by scipy and scikit-learn), dist-info, the vendored libraries' bytes (strip breaks numpy.libs and
scipy.libs; extension modules strip fine). Vendored libraries with the same bytes, or with the same name and the
same exported symbols (numpy and scipy each vendor a libgfortran), become relative symlinks to one copy; a vendored
library no other library needs any more then goes. Every module becomes sourceless bytecode: `X.pyc` where `X.py`
was (a .pyc in __pycache__ without its .py would not import), so tracebacks keep file and line but show no source
text. The standard library gets the same treatment, written under a staging folder (the runtime base ships no
standard-library sources), leaving out what build/runtime-trim.txt lists. The container tests, and one that imports
every submodule of every installed package in the image, are the proof of each rule.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from collections.abc import Callable

from runtime_trim import patterns, trimmed

KEEP = {"numpy/_core/tests/__init__.py", "numpy/_core/tests/_natype.py"}
TEST_DIRS = {"tests", "test"}
# Sources, Cython templates (.tp), C headers and static libraries: for building against a package, not running it.
SOURCE_SUFFIXES = {".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".f", ".f90", ".pyi", ".tmpl", ".tp",
                   ".a"}
# numpy's SIMD test harness: only numpy's own test suite imports it. scikit-learn's build helpers: its meson build
# runs them (one reads sklearn/__init__.py as text).
BUILD_AND_TEST_ONLY = ("numpy/_core/_simd.cpython-*.so", "sklearn/_build_utils")
# What service/docs.py serves (tests/test_build_tools.py keeps the two lists equal); source maps and the other
# Swagger UI builds go.
SWAGGER_UI_SERVED = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
SWAGGER_UI_ASSETS = "swagger_ui_bundle/vendor/swagger-ui-*"
# Stored gzipped; service/docs.py sends the stored bytes to clients that accept gzip and inflates them for the rest.
SWAGGER_UI_GZIPPED = ("swagger-ui-bundle.js", "swagger-ui.css")
VENDORED_LIBS = "*.libs/*"
# sklearn.datasets.load_sample_images() opens these with Pillow: without Pillow installed they cannot be read.
PILLOW_ONLY = "sklearn/datasets/images/*.jpg"
EXTENSION_MODULE = re.compile(r"\.(cpython-3\d+[^/]*|abi3)\.so$")


def exported_symbols(library: Path, tools: str = "") -> frozenset[str]:
    """The dynamic symbols a shared library defines, with their versions (`nm -D --defined-only`; `tools`:
    binutils' prefix for the library's platform)."""
    listing = subprocess.run([f"{tools}nm", "-D", "--defined-only", str(library)], check=True, capture_output=True,
                             text=True)
    return frozenset(line.split(None, 2)[-1] for line in listing.stdout.splitlines() if line.strip())


def needed_libraries(site: Path, tools: str = "") -> set[str]:
    """Every DT_NEEDED name of every shared object under site (`readelf -d`)."""
    names: set[str] = set()
    for path in site.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            listing = subprocess.run([f"{tools}readelf", "-d", str(path)], capture_output=True, text=True).stdout
            names.update(re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", listing))
    return names


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
    for pattern in BUILD_AND_TEST_ONLY:
        for path in sorted(site.glob(pattern)):
            drop("build and test helpers", path)
    for folder in sorted(site.glob(SWAGGER_UI_ASSETS)):
        for path in sorted(folder.iterdir()):
            if path.name not in SWAGGER_UI_SERVED:
                drop("Swagger UI files /docs does not serve", path)
        for name in SWAGGER_UI_GZIPPED:
            original, stored = folder / name, folder / f"{name}.gz"
            if original.is_file():
                stored.write_bytes(gzip.compress(original.read_bytes(), compresslevel=9, mtime=0))
                drop("Swagger UI files stored gzipped", original)
                removed["Swagger UI files stored gzipped"][1] -= stored.stat().st_size
    if not (site / "PIL").is_dir():
        for path in sorted(site.glob(PILLOW_ONLY)):
            drop("images only Pillow opens (not installed)", path)
    first_copy: dict[str, Path] = {}
    for path in sorted(site.glob(VENDORED_LIBS)):
        if path.is_symlink() or not path.is_file():
            continue
        first = first_copy.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
        if first != path:
            drop("duplicate vendored libraries (now symlinks)", path)
            path.symlink_to(os.path.relpath(first, path.parent))
    return {rule: (count, nbytes) for rule, (count, nbytes) in removed.items()}


def share_libraries(site: Path, exported: Callable[[Path], frozenset[str]] = exported_symbols,
                    needed: Callable[[Path], set[str]] = needed_libraries) -> dict[str, tuple[int, int]]:
    """Vendored libraries with one name (libgfortran-<hash>) and the same exported symbols become symlinks to the
    first copy; the vendored libraries only those copies needed then go."""
    needed_before = needed(site)
    first_copy: dict[tuple[str, frozenset[str]], Path] = {}
    linked = [0, 0]
    for path in sorted(site.glob(VENDORED_LIBS)):
        if path.is_symlink() or not path.is_file():
            continue
        kept = first_copy.setdefault((path.name.split("-", 1)[0], exported(path)), path)
        if kept != path:
            linked[0], linked[1] = linked[0] + 1, linked[1] + path.stat().st_size
            path.unlink()
            path.symlink_to(os.path.relpath(kept, path.parent))
    orphans = [0, 0]
    unneeded = needed_before - needed(site)
    for path in sorted(site.glob(VENDORED_LIBS)):
        if path.name in unneeded and path.is_file() and not path.is_symlink():
            orphans[0], orphans[1] = orphans[0] + 1, orphans[1] + path.stat().st_size
            path.unlink()
    return {"same-ABI vendored libraries (now symlinks)": (linked[0], linked[1]),
            "vendored libraries nothing needs any more": (orphans[0], orphans[1])}


def strip_extension_modules(site: Path, tools: str = "") -> dict[str, tuple[int, int]]:
    """`strip --strip-unneeded` on Python extension modules only: never on the vendored *.libs."""
    modules = [p for p in sorted(site.rglob("*.so")) if EXTENSION_MODULE.search(p.name) and p.is_file()
               and not p.is_symlink() and not any(part.endswith(".libs") for part in p.relative_to(site).parts)]
    before = sum(p.stat().st_size for p in modules)
    for start in range(0, len(modules), 100):
        subprocess.run([f"{tools}strip", "--strip-unneeded", *map(str, modules[start:start + 100])], check=True)
    return {"symbols stripped from extension modules": (len(modules), before - sum(p.stat().st_size for p in modules))}


def _compile(source: Path, target: Path, shown_as: Path | None = None) -> bool:
    """Sourceless bytecode of one module (unchecked hash: the same bytes on every build), naming `shown_as` (default
    `source`) as its file in tracebacks; False if it does not compile (a template, or another Python's file), which
    would not import either."""
    try:
        py_compile.compile(str(source), cfile=str(target), dfile=str(shown_as or source), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        return False
    return True


def sourceless(site: Path) -> dict[str, tuple[int, int]]:
    """Each X.py becomes X.pyc beside it and the source goes."""
    count, saved = 0, 0
    for source in sorted(site.rglob("*.py")):
        target = source.with_suffix(".pyc")
        if _compile(source, target):
            count, saved = count + 1, saved + source.stat().st_size - target.stat().st_size
            source.unlink()
    return {"sources replaced by their bytecode": (count, saved)}


SYSCONFIGDATA = "_sysconfigdata__linux_*.py"


def stdlib_bytecode(stdlib: Path, staging: Path, globs: tuple[str, ...],
                    sysconfigdata: Path | None = None) -> dict[str, tuple[int, int]]:
    """The standard library's modules as X.pyc under staging (mirroring their absolute paths), but those the
    runtime base leaves out; with `sysconfigdata`, that file instead of this interpreter's own."""
    count, written = 0, 0
    sources = sorted(stdlib.rglob("*.py"))
    if sysconfigdata is not None:
        sources = [path for path in sources if not path.match(SYSCONFIGDATA)] + [stdlib / sysconfigdata.name]
    for source in sources:
        name = source.relative_to("/").as_posix()
        if {"site-packages", "dist-packages"} & set(source.parts) or trimmed(name, globs):
            continue
        compiled = sysconfigdata if sysconfigdata is not None and source.match(SYSCONFIGDATA) else source
        target = staging / Path(name).with_suffix(".pyc")
        target.parent.mkdir(parents=True, exist_ok=True)
        if _compile(compiled, target, shown_as=source):
            count, written = count + 1, written + target.stat().st_size
    return {"standard library as sourceless bytecode": (count, -written)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trim.py")
    parser.add_argument("venv", type=Path)
    parser.add_argument("staging", type=Path)
    parser.add_argument("--tools", default="", help="binutils' prefix for the venv's platform")
    parser.add_argument("--sysconfigdata", type=Path, help="the venv's platform's _sysconfigdata__linux_*.py")
    args = parser.parse_args(argv[1:])
    site = next(args.venv.glob("lib/python3.*/site-packages"))
    for script in args.venv.glob("bin/activate*"):
        script.unlink()
    total = 0
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    trimmed_away = trim(site)  # first: the test suites' libraries are not to be shared
    shared = share_libraries(site, functools.partial(exported_symbols, tools=args.tools),
                             functools.partial(needed_libraries, tools=args.tools))
    saved = {**trimmed_away, **shared, **strip_extension_modules(site, args.tools), **sourceless(site),
             **stdlib_bytecode(stdlib, args.staging, patterns(), args.sysconfigdata)}
    for rule, (count, nbytes) in saved.items():
        total += nbytes
        print(f"trim: {rule}: {count} paths, {-nbytes / 1e6:+.1f} MB")
    print(f"trim: total {-total / 1e6:+.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
