"""What waitress does before the app sees a request, made to keep the service's promises.

- Errors waitress answers itself (a body over the cap, malformed or oversized headers, an unsupported
  transfer-coding) get the same JSON envelope as the app's, and an access log line.
- A request whose body is over the cap is answered 413 at once, without `100 Continue`: the client is never
  invited to send a body that would be refused (the connection then closes).
- A connection that has not delivered a whole request (headers and body) within REQUEST_TIMEOUT seconds of its
  first byte is closed, so clients trickling bytes cannot hold connections forever (waitress's own timeout only
  closes idle connections, and such a client is never idle).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from .errors import HTTP_CODES, error_body
from .logs import ACCESS, request_id

log = logging.getLogger(__name__)


class JsonErrorTask(ErrorTask):
    """waitress's error response, as the app's JSON envelope."""

    def execute(self) -> None:
        error, parsed = self.request.error, self.request
        path = parsed.path or ""
        if error.code == 413:
            message = f"the request body is larger than the limit of {self.channel.adj.max_request_body_size - 1} bytes"
        else:
            message = " ".join(f"{error.reason}: {error.body}".split())
        identifier = request_id(parsed.headers.get("X_REQUEST_ID", ""))
        body = json.dumps(error_body(path, HTTP_CODES.get(error.code, "http_error"), message,
                                     request_id=identifier)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("X-Request-ID", identifier),
                                      ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        ACCESS.info("%s %s %s", parsed.command or "-", path or "-", error.code,
                    extra={"method": parsed.command, "path": path, "status": error.code, "latency_ms": None,
                           "rows": None, "request_id": identifier, "answered_by": "waitress"})


class Channel(HTTPChannel):
    """waitress's connection, with JSON errors and no `100 Continue` for a request already refused."""

    error_task_class = JsonErrorTask

    def send_continue(self) -> None:
        if self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()


def close_slow_requests(server: Any, limit: float, first_seen: dict[int, tuple[Any, float]]) -> int:
    """Close every connection whose request in progress began arriving more than `limit` seconds ago.
    `first_seen` (file descriptor -> (request parser, time)) carries the bookkeeping between calls; returns how
    many connections were closed."""
    now, closed = time.monotonic(), 0
    channels = dict(server.active_channels)
    for fd in [fd for fd in first_seen if fd not in channels]:
        del first_seen[fd]
    for fd, channel in channels.items():
        partial = channel.request
        if partial is None:
            first_seen.pop(fd, None)
            continue
        seen = first_seen.get(fd)
        if seen is None or seen[0] is not partial:
            first_seen[fd] = (partial, now)
        elif now - seen[1] > limit and not channel.will_close:
            channel.will_close = True  # the event loop closes it on its next pass
            closed += 1
    if closed:
        log.warning("closed %d connection(s) that had not sent a whole request within %g s", closed, limit,
                    extra={"connections": closed, "request_timeout": limit})
    return closed
