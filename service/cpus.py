"""How many CPUs this process may use: its affinity mask (`--cpuset-cpus`, `taskset`) and the CFS quota of its
cgroup (`docker run --cpus`, Kubernetes' `limits.cpu`), which the affinity mask does not show. cgroup v2 reads
`cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; the smallest quota on the way from the process's cgroup
up to the root counts, and a fractional quota rounds up (1.5 CPUs: 2 workers, each throttled a little).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs in the affinity mask, and the CPUs the cgroup quota allows (None: no quota) and where it was read."""

    cpus: tuple[int, ...]
    quota: float | None = None
    source: str = ""

    @property
    def count(self) -> int:
        """Usable CPUs: min(affinity, ceil(quota))."""
        return min(len(self.cpus), math.ceil(self.quota)) if self.quota else len(self.cpus)

    @property
    def decided_by(self) -> str:
        """Which limit set the count, for the start-up log."""
        if self.quota and math.ceil(self.quota) < len(self.cpus):
            return f"{self.source}: {self.quota:g} CPUs"
        return f"affinity: {len(self.cpus)} CPU{'' if len(self.cpus) == 1 else 's'}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """root/a/b, root/a, root for relative "/a/b" (those that exist)."""
    parts = [part for part in relative.split("/") if part]
    folders = [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return [folder for folder in folders if folder.is_dir()]


def _v2_quota(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota is None or period is None or int(quota) <= 0 or int(period) <= 0:
        return None
    return int(quota) / int(period)


def cgroup_quota(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> tuple[float, str] | None:
    """The smallest CFS quota over this process's cgroup and its ancestors, in CPUs, and its source; None if
    none is set (or the files cannot be read)."""
    found: list[tuple[float, str]] = []
    for line in (_read(self_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            folders = _ancestors(root, relative) or [root]
            found += [(q, "cgroup v2 cpu.max") for f in folders if (q := _v2_quota(f)) is not None]
        elif "cpu" in controllers.split(","):
            mounts = [root / controllers, root / "cpu,cpuacct", root / "cpu"]
            for mount in (m for m in mounts if m.is_dir()):
                folders = _ancestors(mount, relative) or [mount]
                found += [(q, "cgroup v1 cpu.cfs_quota_us") for f in folders if (q := _v1_quota(f)) is not None]
                break
    return min(found) if found else None


def budget() -> CpuBudget:
    """This process's CPU budget, read now."""
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    quota = cgroup_quota()
    return CpuBudget(cpus, *quota) if quota else CpuBudget(cpus)
