"""Connections shared fairly between workers that accept from one listening socket.

Every worker polls the same socket, and the first to wake adopts what the kernel queued (up to ACCEPT_BATCH at a
time, service/server.py): 32 keep-alive connections opened at once went 27-32 to one of two workers, which left
the other idle for as long as the clients kept them (issue 28). So each worker publishes, in a slot of memory the
supervisor maps before forking, how many connections it holds and when it last looked; a worker holding more than
SLACK connections beyond the least loaded of the others stops adopting, and polls again soon, until they catch up.
The least loaded worker is never held back, so one of them always accepts. A worker whose slot is older than
STALE_SECONDS (loading, hung, gone, or draining) does not count.
"""
from __future__ import annotations

import mmap
import struct
import time

SLACK = 2  # connections a worker may hold beyond the least loaded of the others
STALE_SECONDS = 2.0  # a slot not refreshed for this long is a worker that does not accept now
RECHECK_SECONDS = 0.01  # how soon a worker held back polls again (it is not woken when the others accept)
_SLOT = struct.Struct("qd")  # connections held, time.monotonic() of the last refresh (one clock for all processes)


class Shares:
    """The workers' slots, mapped before the workers are forked so that every one of them sees the others'."""

    def __init__(self, workers: int):
        self.workers = workers
        self._memory = mmap.mmap(-1, _SLOT.size * workers)  # anonymous and shared: inherited across fork

    def _slots(self) -> list[tuple[int, float]]:
        return [_SLOT.unpack_from(self._memory, index * _SLOT.size) for index in range(self.workers)]

    def publish(self, index: int, connections: int, now: float | None = None) -> None:
        _SLOT.pack_into(self._memory, index * _SLOT.size, connections, time.monotonic() if now is None else now)

    def leave(self, index: int) -> None:
        """This worker no longer accepts (it drains): the others stop comparing themselves with it."""
        _SLOT.pack_into(self._memory, index * _SLOT.size, 0, 0.0)

    def held_back(self, index: int, connections: int, now: float | None = None) -> bool:
        """Whether worker `index`, holding `connections`, should leave new ones to the others for now."""
        now = time.monotonic() if now is None else now
        others = [held for position, (held, seen) in enumerate(self._slots())
                  if position != index and now - seen < STALE_SECONDS]
        return bool(others) and connections > min(others) + SLACK


class Share:
    """One worker's view: its own slot among the `shares`."""

    def __init__(self, shares: Shares, index: int):
        self.shares, self.index = shares, index

    def publish(self, connections: int) -> None:
        self.shares.publish(self.index, connections)

    def held_back(self, connections: int) -> bool:
        return self.shares.held_back(self.index, connections)

    def leave(self) -> None:
        self.shares.leave(self.index)
