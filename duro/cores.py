"""How many cores this process may use: the CPU affinity mask, capped by a cgroup CPU quota.

A container limited to one CPU on a 64-core host still sees all 64 cores in its
affinity mask (Kubernetes' `limits.cpu` and `docker run --cpus` set a CFS quota,
not an affinity). Counting the mask alone would start 64 worker processes there,
each with a Python heap of its own, where one fits the CPU it may use.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores in this process's affinity mask, at most its cgroup CPU quota rounded up (at least 1)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 1.5), or None when there is none or it cannot be read.

    cgroup v2: `cpu.max` holds "QUOTA PERIOD" or "max PERIOD". cgroup v1:
    `cpu/cpu.cfs_quota_us` (-1: none) over `cpu/cpu.cfs_period_us`. The files of
    the cgroup the process sees as its root are read (inside a container that is
    the container's own cgroup).
    """
    v2 = _read_fields(cgroup_root / "cpu.max")
    if v2 is not None:
        return _quota_in_cores(v2[0], v2[1] if len(v2) > 1 else None)
    quota = _read_fields(cgroup_root / "cpu" / "cpu.cfs_quota_us") or _read_fields(cgroup_root / "cpu,cpuacct" / "cpu.cfs_quota_us")
    period = _read_fields(cgroup_root / "cpu" / "cpu.cfs_period_us") or _read_fields(cgroup_root / "cpu,cpuacct" / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _quota_in_cores(quota[0], period[0])


def _read_fields(path: Path) -> list[str] | None:
    try:
        fields = path.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return fields or None


def _quota_in_cores(quota: str, period: str | None) -> float | None:
    if quota in ("max", "-1") or period is None:
        return None
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us
