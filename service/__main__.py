"""`python -m service`: load and verify the model bundle, then serve it on waitress."""
from __future__ import annotations

import logging
import os
import sys

from . import logs
from .bundle import BundleError
from .config import ConfigError


def main() -> int:
    logs.configure(os.environ.get("SERVICE_LOG_LEVEL", "INFO").upper())
    from .app import EXTENSION, create_app
    from .server import serve
    try:
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
