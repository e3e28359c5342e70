"""`python -m service`: load and verify the model bundle, then serve it on waitress."""
from __future__ import annotations

import logging
import sys

from .bundle import BundleError
from .config import ConfigError


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .app import EXTENSION, create_app
    from .server import serve
    try:
        app = create_app()
    except (BundleError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    card = app.extensions[EXTENSION].bundle.card
    logging.getLogger("service").info("model %s %s (sha256 %s) ready", card["name"], card["version"],
                                      card["artifact"]["sha256"])
    serve(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
