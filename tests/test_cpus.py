"""Usable CPUs: the affinity mask and the cgroup's CFS quota (v2 and v1), read from fake cgroup trees."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.config import settings_from_env, worker_count
from service.cpus import CpuBudget, cgroup_quota


def tree(root: Path, files: dict[str, str], self_cgroup: str) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = root / "proc-self-cgroup"
    proc.write_text(self_cgroup)
    return proc


@pytest.mark.parametrize("files,self_cgroup,expected", [
    # docker run --cpus 1 (cgroup v2, private namespace: the container's cgroup is the root)
    ({"cpu.max": "100000 100000\n"}, "0::/\n", (1.0, "cgroup v2 cpu.max")),
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"cpu.max": "150000 100000\n"}, "0::/\n", (1.5, "cgroup v2 cpu.max")),
    # a Kubernetes pod seen from the host namespace: the smallest quota on the way up counts
    ({"kubepods/pod1/cpu.max": "max 100000", "kubepods/pod1/c1/cpu.max": "400000 100000",
      "kubepods/cpu.max": "200000 100000"}, "0::/kubepods/pod1/c1\n", (2.0, "cgroup v2 cpu.max")),
    # cgroup v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
     "12:cpu,cpuacct:/\n3:memory:/\n", (0.5, "cgroup v1 cpu.cfs_quota_us")),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
     "12:cpu,cpuacct:/\n", None),
    ({"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"},
     "12:cpu,cpuacct:/docker/abc\n", (3.0, "cgroup v1 cpu.cfs_quota_us")),
    ({}, "0::/\n", None),  # no cpu controller files at all
])
def test_cgroup_quota(tmp_path: Path, files, self_cgroup, expected):
    proc = tree(tmp_path / "cgroup", files, self_cgroup)
    assert cgroup_quota(tmp_path / "cgroup", proc) == expected


def test_unreadable_cgroup_files_mean_no_quota(tmp_path: Path):
    assert cgroup_quota(tmp_path / "missing", tmp_path / "missing-proc") is None


@pytest.mark.parametrize("budget,count,decided_by", [
    (CpuBudget((0, 1, 2, 3)), 4, "affinity: 4 CPUs"),
    (CpuBudget(tuple(range(64)), 2.0, "cgroup v2 cpu.max"), 2, "cgroup v2 cpu.max: 2 CPUs"),
    (CpuBudget(tuple(range(64)), 1.5, "cgroup v2 cpu.max"), 2, "cgroup v2 cpu.max: 1.5 CPUs"),
    (CpuBudget((0,), 4.0, "cgroup v1 cpu.cfs_quota_us"), 1, "affinity: 1 CPU"),
    (CpuBudget((0, 1), 0.5, "cgroup v2 cpu.max"), 1, "cgroup v2 cpu.max: 0.5 CPUs"),
])
def test_the_smaller_limit_decides(budget, count, decided_by):
    assert (budget.count, budget.decided_by) == (count, decided_by)


def test_service_workers_overrides_the_cpu_count():
    assert worker_count(settings_from_env({"SERVICE_WORKERS": "3"}), 64) == 3
    assert worker_count(settings_from_env({"SERVICE_WORKERS": "0"}), 2) == 2
