"""Import every submodule of the given packages and say what imported, what failed and what it reached.

    python3.13 build/import_all.py numpy scipy sklearn ...   (prints one JSON object)

Two uses: the container tests run it in the builder and in the image and compare (every trim must leave the same
submodules importable), and `build/runtime-trim.txt` lists the standard-library modules none of these imports
reaches (`"stdlib_reached"`), so the runtime base can leave the others out.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
import sys
import sysconfig
import warnings
from pathlib import Path

SKIPPED_PARTS = {"tests", "test", "testing_utils", "__main__", "conftest"}


def submodules(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=package + ".", onerror=lambda _: None):
        if not SKIPPED_PARTS & set(info.name.split(".")):
            names.append(info.name)
    return sorted(set(names))


def stdlib_top_level(module: object) -> str | None:
    """The top-level standard-library name a module belongs to (`xml` for xml.dom.minidom), else None."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    source = getattr(module, "__file__", None)
    if not source:
        return None
    path = Path(source)
    if stdlib not in path.parents or "site-packages" in path.parts:
        return None
    relative = path.relative_to(stdlib).parts
    if relative[0] == "lib-dynload":
        return relative[1].split(".", 1)[0]
    return relative[0].removesuffix(".py").removesuffix(".pyc")


def main(argv: list[str]) -> int:
    imported, failed = [], {}
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(sys.stderr):  # some modules print when imported (narwhals.this)
        for package in argv[1:]:
            for name in submodules(package):
                try:
                    importlib.import_module(name)
                    imported.append(name)
                except BaseException as error:  # noqa: BLE001  (SystemExit and optional-dependency errors alike)
                    failed[name] = (f"{type(error).__name__}: {error}".splitlines() or ["?"])[0][:200]
    reached = sorted({top for module in list(sys.modules.values()) if (top := stdlib_top_level(module))})
    print(json.dumps({"imported": imported, "failed": failed, "stdlib_reached": reached}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
