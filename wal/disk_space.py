"""Free space on the filesystem that holds a node's data dir, and whether it is too low to take new work.

`DiskSpace.run` samples `statvfs` every `check_interval_ms`; `low` is true while
fewer than `min_free_bytes` are free to unprivileged writers. The ingress
refuses new invocations while it is low (507), so the space left still fits
what running invocations, retries, attaches and snapshots need. Crossing the
threshold either way is logged once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

from wal.log import LogFullError

log = logging.getLogger("duro.disk")

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DISK_FULL_WORDS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))  # how RocksDB's errors (plain exceptions) say it


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (from the log, a file write or RocksDB) means the disk has no room left."""
    if isinstance(error, LogFullError):
        return True
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(words in str(error) for words in _DISK_FULL_WORDS)


class DiskSpace:
    """The sampled free space of one filesystem and its low-space state."""

    def __init__(self, path: Path, min_free_bytes: int, check_interval_ms: int) -> None:
        assert min_free_bytes >= 0, "a threshold is not negative"
        assert check_interval_ms > 0, "a sampling interval is positive"
        self.path = path
        self.min_free_bytes = min_free_bytes
        self.check_interval_ms = check_interval_ms
        self.free_bytes = self._measure()
        self.low = False
        self._room = asyncio.Event()  # set while not low
        self._update(self.free_bytes)

    def _measure(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def refresh(self) -> int:
        """Sample now (blocking, a few microseconds); return the free bytes."""
        free = self._measure()
        self._update(free)
        return free

    def _update(self, free: int) -> None:
        self.free_bytes = free
        low = free < self.min_free_bytes
        if low and not self.low:
            log.warning(
                "disk holding %s has %d bytes free, below min_free_disk_bytes=%d: new invocations are refused (507) until space is freed",
                self.path, free, self.min_free_bytes,
            )  # fmt: skip
        elif self.low and not low:
            log.info("disk holding %s has %d bytes free again: new invocations are accepted", self.path, free)
        self.low = low
        if low:
            self._room.clear()
        else:
            self._room.set()

    async def wait_for_room(self) -> None:
        """Return once at least `min_free_bytes` are free (as `run` samples it)."""
        await self._room.wait()

    def describe(self) -> str:
        """What a refused client is told."""
        return (
            f"the node's disk is almost full ({self.free_bytes} bytes free, below min_free_disk_bytes={self.min_free_bytes});"
            " new invocations are refused until space is freed, running ones go on"
        )

    async def run(self) -> None:
        """Sample forever; cancel to stop."""
        while True:
            await asyncio.sleep(self.check_interval_ms / 1000)
            self.refresh()
