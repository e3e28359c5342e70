"""waitress with explicit limits, and a graceful stop on SIGTERM/SIGINT.

On the signal: readiness turns false at once, the listening socket closes, requests in flight finish,
and the process leaves within DRAIN_SECONDS whatever clients do.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from flask import Flask
from waitress.server import create_server

from .app import EXTENSION

log = logging.getLogger(__name__)
LOOP_TIMEOUT = 0.5  # seconds the event loop may sleep; a signal also wakes it through the trigger
# waitress answers a body over its own cap with a plain-text 413 before the app sees it. Its cap sits this far
# above MAX_BODY_BYTES, so the app answers moderate excesses with the JSON envelope while memory stays bounded.
WAITRESS_BODY_SLACK = 1 << 20


def make_server(app: Flask) -> Any:
    config = app.config
    return create_server(
        app,
        host=config["HOST"],
        port=config["PORT"],
        threads=config["THREADS"],
        connection_limit=config["CONNECTION_LIMIT"],
        channel_timeout=config["CHANNEL_TIMEOUT"],
        max_request_body_size=config["MAX_BODY_BYTES"] + WAITRESS_BODY_SLACK,
        ident="",  # no Server: banner
        clear_untrusted_proxy_headers=True,
    )


def _busy(server: Any) -> bool:
    """A request is queued, running, or has a response still to send."""
    return any(channel.requests or channel.total_outbufs_len
               for channel in list(server.active_channels.values()))


def serve(app: Flask) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    server = make_server(app)
    stopping = threading.Event()
    ready = app.extensions[EXTENSION].ready

    def on_signal(signum: int, _frame: Any) -> None:
        ready.clear()
        stopping.set()
        server.pull_trigger()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("serving on http://%s:%s", server.effective_host, server.effective_port)
    while not stopping.is_set():
        server.asyncore.loop(timeout=LOOP_TIMEOUT, map=server._map, count=1)

    drain = app.config["DRAIN_SECONDS"]
    deadline = time.monotonic() + drain
    server.accepting = False
    server.del_channel()
    server.socket.close()
    while _busy(server) and time.monotonic() < deadline:
        server.asyncore.loop(timeout=0.05, map=server._map, count=1)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
    log.info("stopped (drain limit %.1f s)", drain)
