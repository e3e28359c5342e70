"""`python -m service.healthcheck`: exit 0 when the local server answers ready, 1 otherwise.

Used by the image's HEALTHCHECK (exec form: the image has no shell and no curl).
"""
from __future__ import annotations

import sys
import urllib.request

from .config import settings_from_env


def main() -> int:
    settings = settings_from_env()
    host = "127.0.0.1" if settings["HOST"] in ("0.0.0.0", "") else settings["HOST"]
    url = f"http://{host}:{settings['PORT']}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
