"""`python -m service`: load and verify the model bundle, then serve it on waitress (see service/workers.py)."""
from __future__ import annotations

import sys

from . import logs
from .config import ConfigError, settings_from_env
from .workers import run


def main() -> int:
    try:
        settings = settings_from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings["LOG_LEVEL"].upper())
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
