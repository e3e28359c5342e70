"""`python -m service.healthcheck`: exit 0 when the local server answers ready, 1 otherwise.

Used by the image's HEALTHCHECK (exec form: the image has no shell and no curl). It runs every 5 s inside the
container's memory limit, so it speaks HTTP/1.0 over a plain socket: urllib would import ssl and take a 22 MB
process where this takes 10 (docs/operations.md: memory).
"""
from __future__ import annotations

import socket
import sys

from .config import settings_from_env

TIMEOUT = 2.0
LOCAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # the address to call where the server binds all


def main() -> int:
    settings = settings_from_env()
    host = LOCAL.get(settings["HOST"], settings["HOST"])
    where = f"http://{host}:{settings['PORT']}/health/ready"
    try:
        with socket.create_connection((host, settings["PORT"]), timeout=TIMEOUT) as connection:
            connection.sendall(f"GET /health/ready HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            status_line = connection.makefile("rb").readline(256)
    except OSError as exc:
        print(f"unhealthy: {where}: {exc}", file=sys.stderr)
        return 1
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200":
        return 0
    print(f"unhealthy: {where}: {status_line.decode(errors='replace').strip() or 'no answer'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
