"""Pressure on the machine while a test runs, the kinds a busy build host puts on a server (issue 28 item 4):
processes that keep every CPU busy, a writer that keeps the disk's queue full and syncs, and a memory limit
under which the server's own pages are evicted and read back."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SPIN = "while True: pass"
# Writes 64 MiB files and syncs each, for ever: dirty pages and a full I/O queue, as layer extraction makes them.
WRITE = """
import os, sys
path, block = sys.argv[1], b"\\0" * (1 << 20)
while True:
    with open(path, "wb") as out:
        for _ in range(64):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    os.unlink(path)
"""


@contextlib.contextmanager
def background(commands: list[list[str]]) -> Iterator[None]:
    """These processes, at normal priority, for the duration; killed after."""
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for command in commands]
    try:
        yield
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def cpu_hogs(per_cpu: int = 2) -> contextlib.AbstractContextManager[None]:
    """`per_cpu` busy processes per CPU this process may use."""
    count = per_cpu * len(os.sched_getaffinity(0))
    return background([[sys.executable, "-c", SPIN]] * count)


def disk_writers(folder: Path, count: int = 2) -> contextlib.AbstractContextManager[None]:
    return background([[sys.executable, "-c", WRITE, str(folder / f"pressure-{n}")] for n in range(count)])
