"""Compile to bytecode exactly the modules the service imports: start-up, model load and warm-up.

    python3.13 build/compile_imported.py PREFIX=STAGING...

For each module whose source lies under a PREFIX, writes a checked-hash .pyc (Python verifies it against the
source's hash, so a .pyc can never run stale code) under that prefix's STAGING folder, mirroring its absolute
path: the service's and the user's code keep their sources (tracebacks show them); the installed packages and
the standard library are sourceless bytecode already (build/trim.py).

A model whose code imports a standard-library module the runtime base leaves out (build/runtime-trim.txt) stops
here, in one line, exit 2.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from runtime_trim import patterns, trimmed


def main(argv: list[str]) -> int:
    targets = [(prefix, Path(staging)) for prefix, staging in (pair.split("=", 1) for pair in argv[1:])]
    from service.app import create_app
    create_app()  # imports Flask, waitress-free app code, the estimator's modules; predicts the examples
    import service.server  # waitress and the serving loop
    import service.healthcheck  # noqa: F401 - imported for its bytecode and its imports'
    globs = patterns()
    missing = sorted({name.split(".")[0] for name, module in list(sys.modules.items())
                      if trimmed((getattr(module, "__file__", None) or "").lstrip("/"), globs)})
    if missing:
        print(f"error: the model imports {', '.join(missing)}, which the runtime image leaves out "
              f"(build/runtime-trim.txt): remove the line(s) that cover it and rebuild", file=sys.stderr)
        return 2
    import py_compile  # only now: the runtime image has no py_compile
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
