"""Compile to bytecode exactly the modules the service imports: start-up, model load and warm-up.

    python3.13 build/compile_imported.py PREFIX=STAGING...

For each module whose source lies under a PREFIX, writes a checked-hash .pyc (Python verifies it against the
source's hash, so a .pyc can never run stale code) under that prefix's STAGING folder, mirroring its absolute
path. Separate staging folders let the image keep the dependencies' bytecode apart from the service's.
Modules a different bundle needs later still import, compiled in memory. Why not everything: see README,
"Bytecode".
"""
from __future__ import annotations

import importlib.util
import py_compile
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    targets = [(prefix, Path(staging)) for prefix, staging in (pair.split("=", 1) for pair in argv[1:])]
    from service.app import create_app
    create_app()  # imports Flask, waitress-free app code, the estimator's modules; predicts the examples
    import service.server  # noqa: F401  (waitress and the serving loop)
    import service.healthcheck  # noqa: F401
    count = size = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None) or ""
        staging = next((staging for prefix, staging in targets if source.startswith(prefix)), None)
        if staging is None or not source.endswith(".py"):
            continue
        target = staging / importlib.util.cache_from_source(source).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        py_compile.compile(source, cfile=str(target), doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        count, size = count + 1, size + target.stat().st_size
    print(f"compiled {count} imported modules, {size / 1e6:.1f} MB of bytecode")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
