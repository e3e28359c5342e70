"""What waitress does before the app sees a request, made to keep the service's promises.

- **Framing no two parties can read differently.** `Content-Length` together with `Transfer-Encoding`, a
  `Transfer-Encoding` with `chunked` repeated or not last (or any outside HTTP/1.1), and folded header lines are
  answered 400 and the connection closed (RFC 9112 §6.1, §6.3 and §5.2: a front end and this server could
  otherwise disagree on where a request ends, and a request smuggled after it would be answered). A chunk whose
  declared size takes the body past the cap is answered 413 as soon as its size line arrives.
- **Errors waitress answers itself** (a request head that does not parse, a body over the cap, headers too
  large, an unsupported transfer-coding) get the app's JSON envelope and an access line, read only what the
  parser set (a start line that did not parse sets no method and no path), and always close the connection;
  if answering fails anyway, the connection is closed rather than left holding its slot.
- **No `100 Continue`** for a request already refused: the client is never invited to send a body that would
  be refused.
- **Every connection has a deadline** (`enforce_deadlines`): a request that has begun must be whole within
  REQUEST_TIMEOUT seconds of its first byte (clients trickling bytes are never idle, so waitress's own timeout
  never cuts them), and a connection with no traffic for CHANNEL_TIMEOUT seconds is closed whatever it is
  waiting for: a next request, an answer, or a client that stopped reading.
- **While draining** (`server.draining`, set on SIGTERM) every answer carries `Connection: close`, so a
  keep-alive client opens its next request elsewhere instead of being cut mid-request at the drain deadline.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.receiver import ChunkedReceiver
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestEntityTooLarge

from .errors import HTTP_CODES, error_body
from .logs import ACCESS, request_id

log = logging.getLogger(__name__)
SWEEP_SECONDS = 0.25  # how often deadlines are checked (they are counted in seconds)
_HEADER_NAME = re.compile(rb"^([^:\s]+):")


def _framing_problem(header_plus: bytes) -> str | None:
    """Why the request head's framing is ambiguous, or None. Read from the raw lines: waitress joins folded
    lines, joins repeated headers and drops Transfer-Encoding before anything else can see them."""
    lines = header_plus.split(b"\r\n")
    version_1_1 = lines[0].rstrip().endswith(b" HTTP/1.1")  # waitress reads Transfer-Encoding only in 1.1
    lengths, codings = 0, []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            return "a folded header line (obs-fold) is not accepted"
        match = _HEADER_NAME.match(line)
        if match is None:
            continue
        name = match.group(1).lower()
        if name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            codings += [c.strip(b" \t").lower() for c in line[match.end():].split(b",") if c.strip(b" \t")]
    if codings and lengths:
        return "Content-Length and Transfer-Encoding together are ambiguous"
    if codings and not version_1_1:
        return "Transfer-Encoding is only accepted in HTTP/1.1 requests"
    if codings.count(b"chunked") > 1 or (b"chunked" in codings and codings[-1] != b"chunked"):
        return "chunked must be the last transfer-coding, and only once"
    return None


class CappedChunkedReceiver(ChunkedReceiver):
    """A chunked body refused as soon as a chunk's declared size would take it past the cap."""

    error: Exception | None  # waitress' attributes, set by ChunkedReceiver.__init__
    chunk_remainder: int
    all_chunks_received: bool

    def __init__(self, buf: Any, limit: int):
        super().__init__(buf)
        self.limit = limit

    def received(self, s: bytes) -> int:
        consumed = super().received(s)
        if self.error is None and len(self.buf) + self.chunk_remainder >= self.limit:
            self.error = RequestEntityTooLarge(f"exceeds max_body of {self.limit}")
            self.all_chunks_received = True
        return consumed


class Parser(HTTPRequestParser):
    """waitress's request parser, refusing ambiguous framing and oversized chunks."""

    body_rcv: Any  # waitress' attribute: the body's receiver

    def parse_header(self, header_plus: bytes) -> None:
        problem = _framing_problem(header_plus)
        if problem:
            raise ParsingError(problem)
        super().parse_header(header_plus)
        if self.chunked:
            self.body_rcv = CappedChunkedReceiver(self.body_rcv.getbuf(), self.adj.max_request_body_size)


class JsonErrorTask(ErrorTask):
    """waitress's error response, as the app's JSON envelope; the connection closes after it."""

    def execute(self) -> None:
        parsed = self.request
        error = parsed.error
        # a start line that did not parse leaves no method or path on the parser
        method, path = getattr(parsed, "command", None) or "-", getattr(parsed, "path", None) or "-"
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
        ACCESS.info("%s %s %s", method, path, error.code,
                    extra={"method": method, "path": path, "status": error.code, "latency_ms": None,
                           "rows": None, "request_id": identifier, "answered_by": "waitress"})


class Task(WSGITask):
    """The app's answer; `Connection: close` once the server drains."""

    def build_response_header(self) -> bytes:
        if self.channel.server.draining:
            self.set_close_on_finish()
        return super().build_response_header()


class Channel(HTTPChannel):
    """waitress's connection, with the parser, tasks and error answers above."""

    parser_class = Parser
    task_class = Task
    error_task_class = JsonErrorTask
    requests: list[Any]  # waitress' attributes: the requests read and not yet answered, and their lock
    heard_from = False  # whether the client has sent anything yet (a drain keeps a connection that has not)

    def received(self, data: bytes) -> bool:
        self.heard_from = True
        return bool(super().received(data))

    def send_continue(self) -> None:
        if self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()

    def service(self) -> None:
        try:
            super().service()
        except Exception:  # waitress's own error answer failed: close rather than hold the slot
            log.exception("closing a connection whose request could not be answered")
            with self.requests_lock:
                for request in self.requests:
                    request.close()
                self.requests = []
            self.will_close = True
            self.server.pull_trigger()


def enforce_deadlines(server: Any, request_timeout: float, idle_timeout: float,
                      first_seen: dict[int, tuple[Any, float]]) -> int:
    """Close every connection whose request in progress began arriving more than `request_timeout` seconds ago,
    and every one without traffic for `idle_timeout` seconds. Closed here, on the event loop's thread, rather
    than marked: a connection whose client stopped reading never turns writable, so a mark would never be acted
    on. `first_seen` (file descriptor -> (request parser, time)) carries the bookkeeping between calls; returns
    how many connections were closed."""
    now, wall = time.monotonic(), time.time()
    channels = dict(server.active_channels)
    for fd in [fd for fd in first_seen if fd not in channels]:
        del first_seen[fd]
    slow, stuck = 0, 0
    for fd, channel in channels.items():
        partial = channel.request
        if partial is None:
            first_seen.pop(fd, None)
        else:
            seen = first_seen.get(fd)
            if seen is None or seen[0] is not partial:
                first_seen[fd] = (partial, now)
            elif now - seen[1] > request_timeout:
                slow += 1
                channel.handle_close()
                continue
        if wall - channel.last_activity > idle_timeout:
            stuck += bool(channel.requests or channel.total_outbufs_len)  # plain idle keep-alive: not news
            channel.handle_close()
    if slow:
        log.warning("closed %d connection(s) that had not sent a whole request within %g s", slow,
                    request_timeout, extra={"connections": slow, "request_timeout": request_timeout})
    if stuck:
        log.warning("closed %d connection(s) whose answer was not taken within %g s", stuck, idle_timeout,
                    extra={"connections": stuck, "channel_timeout": idle_timeout})
    return slow + stuck
