"""CPU time and memory of a process tree, read from Linux's /proc.

A `ProcessTree` is named by its root pid; every read walks /proc again, so
children started or ended since the last read are accounted for. CPU time of a
child that ended and was waited for shows up in its parent's `cutime`/`cstime`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class ProcessStatsUnavailable(RuntimeError):
    """This platform has no /proc to read process statistics from."""


def check_available() -> None:
    if not (PROC / "self" / "stat").exists():
        raise ProcessStatsUnavailable("/proc/self/stat is missing: the benchmark harness reads process statistics from Linux's /proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _status_kib(pid: int, key: str) -> int:
    """A `kB` value from /proc/PID/status (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])  # field 4 of stat: ppid
    return parents


def tree_pids(root_pid: int) -> list[int]:
    """The root and all its living descendants (empty if the root is gone)."""
    parents = _parent_pids()
    if root_pid not in parents:
        return []
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(frontier)
    return found


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process and its waited-for children."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])  # stat fields 14-17
    return (utime + stime + cutime + cstime) / CLOCK_TICKS_PER_S


@dataclass(frozen=True)
class ProcessTree:
    """A process and, if `include_children`, its descendants."""

    root_pid: int
    include_children: bool = True

    def pids(self) -> list[int]:
        if not self.include_children:
            return [self.root_pid] if _stat_fields(self.root_pid) is not None else []
        return tree_pids(self.root_pid)

    def cpu_s(self) -> float:
        return sum(process_cpu_s(pid) for pid in self.pids())

    def rss_bytes(self) -> int:
        return sum(_status_kib(pid, "VmRSS") for pid in self.pids()) * 1024

    def peak_rss_bytes(self) -> int:
        """Sum of each living process's high-water RSS: an upper bound of the tree's peak."""
        return sum(_status_kib(pid, "VmHWM") for pid in self.pids()) * 1024


class CpuWindow:
    """CPU seconds a process tree spends between `begin()` and `end()`."""

    def __init__(self, tree: ProcessTree) -> None:
        self.tree = tree
        self._begin_cpu_s: float | None = None
        self.cpu_s: float | None = None

    def begin(self) -> None:
        self._begin_cpu_s = self.tree.cpu_s()

    def end(self) -> None:
        assert self._begin_cpu_s is not None, "CpuWindow.end() called before begin()"
        self.cpu_s = self.tree.cpu_s() - self._begin_cpu_s
