"""`duro.cores`: the cores a process may use, from its affinity mask and a cgroup CPU quota (files under a temp dir)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from duro.cores import cgroup_cpu_quota, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "50000 100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
)
def test_the_quota_is_read_from_cgroup_v2_or_v1(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    for relative, text in files.items():
        write(tmp_path, relative, text)
    assert cgroup_cpu_quota(tmp_path) == quota


def test_a_quota_caps_the_affinity_rounded_up(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "50000 100000\n")
    assert usable_cores(tmp_path) == 1, "half a core is one worker"
    write(tmp_path, "cpu.max", "150000 100000\n")
    assert usable_cores(tmp_path) == min(AFFINITY, 2)


def test_a_quota_above_the_affinity_or_none_leaves_the_affinity(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", f"{(AFFINITY + 8) * 100000} 100000\n")
    assert usable_cores(tmp_path) == AFFINITY
    write(tmp_path, "cpu.max", "max 100000\n")
    assert usable_cores(tmp_path) == AFFINITY
