"""`python -m service`: load and verify the model bundle, then serve it on waitress."""
from __future__ import annotations

import logging
import sys

from . import logs
from .bundle import BundleError
from .config import ConfigError, settings_from_env


def main() -> int:
    from .app import create_app
    from .state import EXTENSION
    from .server import serve
    try:
        logs.configure(settings_from_env()["LOG_LEVEL"].upper())
        app = create_app()
    except (BundleError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card = app.extensions[EXTENSION].bundle.card
    logging.getLogger("service").info("model %s %s ready", card["name"], card["version"], extra={
        "model": card["name"], "model_version": card["version"], "sha256": card["artifact"]["sha256"]})
    serve(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
