"""CPU time a server spent, read from its cgroup: the most stable figure on a shared machine (requests per second
move with whatever else runs; the CPU one request costs barely does).

A container has its own cgroup already; a process started by the benchmark gets one made for it (as root), which
its children inherit, so MLServer's and this service's worker processes count, even those that ended. cgroup v1's
`cpuacct` hierarchy is used where it is mounted (Docker's cgroupfs driver accounts there, also on hybrid hosts),
else cgroup v2's `cpu.stat`. Where neither can be read (not Linux, not root for a process), the meter reads None.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Hierarchy:
    """Where CPU time is accounted: a cgroup v1 `cpuacct` mount, or the cgroup v2 mount."""

    mount: Path
    root: str  # the hierarchy's path the mount shows (/ outside a container)
    v2: bool

    def usage_seconds(self, group: Path) -> float:
        if self.v2:
            stat = (group / "cpu.stat").read_text()
            return int(re.search(r"^usage_usec (\d+)$", stat, re.M).group(1)) / 1e6  # type: ignore[union-attr]
        return int((group / "cpuacct.usage").read_text()) / 1e9

    def procs(self, group: Path) -> Path:
        return group / "cgroup.procs"


def hierarchy(mountinfo: str | None = None) -> Hierarchy | None:
    """The hierarchy that accounts CPU on this host, or None (no cgroups here)."""
    try:
        text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    except OSError:
        return None
    v1 = v2 = None
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fields, (fstype, _source, options) = before.split(), after.split()[:3]
        if fstype == "cgroup" and "cpuacct" in options.split(","):
            v1 = Hierarchy(Path(fields[4]), fields[3], v2=False)
        elif fstype == "cgroup2":
            v2 = Hierarchy(Path(fields[4]), fields[3], v2=True)
    return v1 or v2


def group_of(pid: int, where: Hierarchy, proc_cgroup: str | None = None) -> Path | None:
    """The cgroup folder `pid` is accounted in, or None if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text() if proc_cgroup is None else proc_cgroup
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if (where.v2 and controllers == "") or (not where.v2 and "cpuacct" in controllers.split(",")):
            relative = path[len(where.root):] if where.root != "/" and path.startswith(where.root) else path
            return where.mount / relative.lstrip("/")
    return None


class Meter:
    """Seconds of CPU spent so far by one cgroup; `read()` is None where it cannot be read, and `failure` then says
    why, if a read was tried (it describes the last read)."""

    def __init__(self, where: Hierarchy | None, group: Path | None, owned: bool = False):
        self.where, self.group, self.owned = where, group, owned
        self.failure: str | None = None

    def read(self) -> float | None:
        self.failure = None
        if self.where is None or self.group is None:
            return None
        try:
            return self.where.usage_seconds(self.group)
        except (OSError, AttributeError, ValueError) as error:
            self.failure = f"{self.group}: {type(error).__name__}: {error}"
            return None

    def close(self) -> None:
        """Remove the cgroup made for a process (empty once it ended)."""
        if self.owned and self.group is not None:
            try:
                self.group.rmdir()
            except OSError:
                pass


def of_pid(pid: int) -> Meter:
    """A meter on the cgroup `pid` runs in: a container's main process, say."""
    where = hierarchy()
    return Meter(where, group_of(pid, where) if where else None)


def for_command(name: str, command: list[str]) -> tuple[Meter, list[str]]:
    """A new cgroup for a process not started yet, and the command that enters it before it executes, so every
    process it starts is accounted there; without permission, a meter that reads None and the command as given."""
    where = hierarchy()
    if where is None:
        return Meter(None, None), command
    group = where.mount / f"sms-bench-{os.getpid()}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
    try:
        group.mkdir(exist_ok=True)
    except OSError:
        return Meter(None, None), command
    enter = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(where.procs(group)), *command]
    return Meter(where, group, owned=True), enter
