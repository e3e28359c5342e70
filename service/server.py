"""waitress with explicit limits, and a graceful stop on SIGTERM/SIGINT.

On the signal: readiness turns false at once and every answer from then on carries `Connection: close` (a
keep-alive client sends its next request on a new connection, elsewhere); new connections' SYNs are dropped (so
they end refused, never reset), while handshakes already under way still complete and are adopted for
HANDSHAKE_SECONDS, then the listening socket closes; each connection is closed once its client has sent
something and it has nothing queued, running, partly received, unsent or unread and has been quiet for
QUIET_SECONDS (so a request already on its way, or from a slow client, is still read and answered); the process
leaves when no connection is left, and within DRAIN_SECONDS whatever clients do.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any
from collections.abc import Callable

from flask import Flask
from waitress.server import create_server

from .connections import SWEEP_SECONDS, Channel, enforce_deadlines
from .metrics import METRICS
from .shares import RECHECK_SECONDS, Share
from .state import EXTENSION

log = logging.getLogger(__name__)
LOOP_TIMEOUT = 0.5  # seconds the event loop may sleep; a signal also wakes it through the trigger
# Response bodies are kept in memory up to this size; beyond it waitress would spill them to a temporary file,
# and a read-only root has none. The largest answer (SERVICE_MAX_ROWS rows with probabilities) is far smaller.
OUTBUF_OVERFLOW = 64 << 20
# A request head larger than this gets 431. Node.js' default; nginx allows 32 KB in four buffers, Apache 8 KB per
# field. It bounds what a connection that never finishes its head can hold: with SERVICE_CONNECTION_LIMIT at
# 1,500, about 27 MB per worker at worst (measured: 18 KB per connection holding a 16,000-byte partial head),
# against 25 MB for 100 connections at waitress' default of 256 KB.
MAX_HEADER_BYTES = 16 << 10
# Connections adopted each time the listener is readable (waitress takes one, and each pass of its loop polls every
# open connection, so a burst of 2,000 took over a second to adopt; in batches, a few passes).
ACCEPT_BATCH = 64


def make_server(app: Flask, listener: socket.socket, share: Share | None = None) -> Any:
    """waitress on `listener`, a listening socket (bound by service/workers.py, shared by the workers); with a
    `share`, this worker leaves new connections to the others while it holds more than its share.

    Bodies up to MAX_BODY_BYTES are kept in memory (waitress spills larger ones to a temporary file, which a
    read-only root does not have); a larger one is refused by waitress with the JSON 413 before it is read, so
    memory per connection stays bounded by the cap."""
    config = app.config
    server = create_server(
        app,
        sockets=[listener],
        threads=config["THREADS"],
        connection_limit=config["CONNECTION_LIMIT"],
        channel_timeout=config["CHANNEL_TIMEOUT"],
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=config["MAX_BODY_BYTES"] + 1,  # waitress refuses a body of this size or more
        inbuf_overflow=config["MAX_BODY_BYTES"] + 1,
        outbuf_overflow=OUTBUF_OVERFLOW,
        ident="",  # no Server: banner
        clear_untrusted_proxy_headers=True,
    )
    server.channel_class = Channel
    server.handle_accept = _accepting_in_batches(server, share)
    server.draining = False  # set on SIGTERM: answers then close their connection (service/connections.py)
    server.held_back = False  # this worker holds more than its share: the listener is not polled meanwhile
    if share is not None:
        server.readable = _unless_held_back(server)
    return server


# A connection answered before the drain began, silent this long since (or since the drain began), with nothing
# queued, unsent or unread, is done: its client is not sending. At 0.25 s a request was lost in CI (ci53) on a
# machine busy building images: a client thread took about a second to send it.
QUIET_SECONDS = 1.0


def _accepting_in_batches(server: Any, share: Share | None) -> Callable[[], None]:
    """waitress' handle_accept, repeated until the backlog is empty, ACCEPT_BATCH are taken, the limit is met or
    (with a `share`, while accepting) this worker holds more than its share."""
    accept_one = server.handle_accept

    def handle_accept() -> None:
        for _ in range(ACCEPT_BATCH):
            before = len(server._map)
            if before >= server.adj.connection_limit:
                return
            accept_one()
            if len(server._map) == before:
                return
            if share is not None and server.accepting:
                share.publish(len(server.active_channels))
                if share.held_back(len(server.active_channels)):
                    return
    return handle_accept


def _unless_held_back(server: Any) -> Callable[[], bool]:
    """waitress' readable() for the listener, false while this worker holds more than its share (`held_back`,
    decided before each pass of the loop, whose wait is then short)."""
    readable = server.readable

    def unless_held_back() -> bool:
        return bool(readable()) and not server.held_back
    return unless_held_back


def _close_finished(server: Any, draining_since: float) -> None:
    """Close every connection that is done: its client has sent something (one that has not is about to, and is
    kept until the drain limit, as Go's net/http keeps a new connection), nothing is queued, running, partly
    received, unsent or waiting unread in the kernel, and it has been quiet for QUIET_SECONDS, counted from the
    drain's start at the earliest. Closed here, after the kernel was asked, rather than marked for the loop's
    next pass: a request arriving meanwhile would be reset unread."""
    quiet_since = time.time() - QUIET_SECONDS
    done = {fd: channel for fd, channel in list(server.active_channels.items())
            if channel.heard_from and not (channel.requests or channel.request or channel.total_outbufs_len)
            and max(channel.last_activity, draining_since) <= quiet_since}
    if not done:
        return
    poller = select.poll()
    for fd in done:
        poller.register(fd, select.POLLIN)
    unread = {fd for fd, _ in poller.poll(0)}
    for fd, channel in done.items():
        if fd not in unread:
            channel.handle_close()


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


SO_ATTACH_FILTER = 26  # Linux's (asm-generic/socket.h); Python's socket module does not name it
# Classic BPF, run by the kernel on each TCP segment for the listener (and, inherited, its new connections), at the
# TCP header: a SYN without ACK (a new connection) is dropped, everything else kept, so a handshake already under
# way (its final ACK) and the data that follows still get through.
_DROP_SYN = (
    _SockFilter(0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS: the flags byte
    _SockFilter(0x54, 0, 0, 0x12),  # BPF_ALU | BPF_AND | BPF_K: SYN and ACK only
    _SockFilter(0x15, 0, 1, 0x02),  # BPF_JMP | BPF_JEQ | BPF_K: SYN alone? next : skip one
    _SockFilter(0x06, 0, 0, 0),  # BPF_RET | BPF_K, 0 bytes kept: dropped
    _SockFilter(0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: kept whole
)
# How long the listener still adopts connections after new SYNs are dropped: a handshake whose SYN was taken just
# before completes within a round trip (microseconds here, a few milliseconds across a cluster), unless the
# kernel's packet processing is delayed on a busy host. Closing the listener with a handshake still completing
# reset that connection, its request unanswered (seen once in CI with the listener closed microseconds after
# the filter). Past this, a client's SYN retry (a second after the first) finds the socket closed: refused.
HANDSHAKE_SECONDS = 0.25


def _refuse_new_connections(listener: socket.socket) -> None:
    """Drop the SYNs of new connections from now on (a socket filter), keeping those the kernel already queued
    and the handshakes under way.

    A dropped SYN is sent again after a second and then finds the socket closed: the client sees a refused
    connection, which it (or its load balancer) can retry elsewhere; never one reset with its request
    unanswered. Where the kernel has no socket filters (not Linux), the close is as before."""
    if not sys.platform.startswith("linux"):
        return
    program = (_SockFilter * len(_DROP_SYN))(*_DROP_SYN)
    fprog = _SockFprog(len(_DROP_SYN), ctypes.cast(program, ctypes.POINTER(_SockFilter)))
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as exc:
        log.debug("no socket filter on the listener (%s): new connections may be reset at the close", exc)


def _adopt_queued(server: Any) -> None:
    """Adopt every connection the kernel has queued on the listener, up to the connection limit. Until the
    listener is no longer readable, not until an accept comes back empty: waitress' accept also comes back empty
    for a connection reset while it was queued, with others behind it."""
    poller = select.poll()
    poller.register(server.socket, select.POLLIN)
    for _ in range(server.adj.connection_limit):
        if not poller.poll(0) or len(server._map) >= server.adj.connection_limit:
            return
        server.handle_accept()


def _close_listener(server: Any) -> None:
    """Adopt what is queued, then close the listening socket."""
    _adopt_queued(server)
    server.del_channel()
    server.socket.close()


def serve(app: Flask, listener: socket.socket, parent: int | None = None,
          serving: Callable[[], None] = lambda: None, draining: Callable[[float], None] = lambda _: None,
          share: Share | None = None) -> None:
    """Serve until SIGTERM or SIGINT (or, for a worker, until its supervisor `parent` is gone), then drain.
    `serving` is called once a signal would drain; `draining(seconds)` when the drain begins (the gRPC server's
    own graceful stop); `share`, for one of several workers, balances connections between them
    (service/shares.py)."""
    server = make_server(app, listener, share)
    stopping = threading.Event()
    ready = app.extensions[EXTENSION].ready
    connections = app.extensions[METRICS].connections
    request_timeout, idle_timeout = app.config["REQUEST_TIMEOUT"], app.config["CHANNEL_TIMEOUT"]
    first_seen: dict[int, tuple[Any, float]] = {}
    next_sweep = 0.0

    def on_signal(signum: int, _frame: Any) -> None:
        ready.clear()
        server.draining = True
        stopping.set()
        server.pull_trigger()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving()
    log.info("serving on http://%s:%s", server.effective_host, server.effective_port)
    while not stopping.is_set():
        if share is not None:
            share.publish(len(server.active_channels))
            server.held_back = server.accepting and share.held_back(len(server.active_channels))
        server.asyncore.loop(timeout=RECHECK_SECONDS if server.held_back else LOOP_TIMEOUT, use_poll=True,
                             map=server._map, count=1)
        if time.monotonic() < next_sweep:
            continue
        next_sweep = time.monotonic() + SWEEP_SECONDS
        enforce_deadlines(server, request_timeout, idle_timeout, first_seen)
        connections.set(len(server.active_channels))
        if parent is not None and os.getppid() != parent:  # the supervisor was killed: leave, as it would ask
            log.warning("supervisor %d is gone: stopping", parent)
            ready.clear()
            server.draining = True
            stopping.set()

    drain = app.config["DRAIN_SECONDS"]
    deadline = time.monotonic() + drain
    if share is not None:
        share.leave()
    draining(drain)
    server.accepting, server.held_back = False, False  # the drain adopts below, from every worker, not held back
    _refuse_new_connections(server.socket)
    draining_since = time.time()  # wall clock, like waitress's last_activity
    listening_until = time.monotonic() + HANDSHAKE_SECONDS
    listening = True
    while (listening or server.active_channels) and time.monotonic() < deadline:
        if listening and time.monotonic() < listening_until:
            _adopt_queued(server)
        elif listening:
            _close_listener(server)  # it adopts what is queued first
            listening = False
        _close_finished(server, draining_since)
        server.asyncore.loop(timeout=0.05, use_poll=True, map=server._map, count=1)
    if listening:  # the deadline came first (a DRAIN_SECONDS shorter than HANDSHAKE_SECONDS): counted as cut
        _close_listener(server)
    cut = len(server.active_channels)  # what the deadline, not the clients, ended
    connections.set(0)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
    server.trigger.close()  # the loop's wake-up pipe (a server run in a test's process would leak it)
    log.log(logging.WARNING if cut else logging.INFO, "stopped (drain limit %.1f s, %d connections cut at it)",
            drain, cut, extra={"drain_seconds": drain, "connections_cut": cut})
