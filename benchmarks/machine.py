"""What the benchmark ran on: CPU, memory, kernel, disk, load, software versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.endpoint import REPO_ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _filesystem_of(path: Path) -> str:
    """The mount (device and type) holding `path`, from /proc/mounts."""
    best = ("", "unknown")
    try:
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount_point, fs_type = line.split()[:3]
            if resolved.startswith(mount_point) and len(mount_point) >= len(best[0]):
                best = (mount_point, f"{device} ({fs_type}) on {mount_point}")
    except OSError:
        pass
    return best[1]


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain"], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def describe_machine(out_dir: Path) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_mib": _memory_total_mib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "data_filesystem": _filesystem_of(out_dir),
        "loadavg_at_start": list(os.getloadavg()),
        "duro_revision": _git_revision(),
        "restate_sdk": _package_version("restate-sdk"),
        "aiohttp": _package_version("aiohttp"),
        "hypercorn": _package_version("hypercorn"),
        "restate_server_version_requested": os.environ.get("RESTATE_VERSION", "1.7.12 (restate-server.sh default)"),
    }
