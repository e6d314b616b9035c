"""Tests of the low-space state of the data dir's disk and of what counts as a full disk."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from wal.disk_space import DiskSpace, is_disk_full
from wal.log import LogError, LogFullError


class FakeStatvfs:
    """`os.statvfs` with a settable number of free 4 KiB blocks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, free_bytes: int) -> None:
        self.free_bytes = free_bytes
        monkeypatch.setattr(os, "statvfs", self)

    def __call__(self, path: Path) -> os.statvfs_result:
        return os.statvfs_result((4096, 4096, 1 << 20, self.free_bytes // 4096, self.free_bytes // 4096, 0, 0, 0, 0, 255))


async def test_low_below_the_threshold_and_room_again_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "duro.disk")
    statvfs = FakeStatvfs(monkeypatch, 100 << 20)
    disk = DiskSpace(tmp_path, 10 << 20, check_interval_ms=10)
    assert not disk.low
    statvfs.free_bytes = 4 << 20
    assert disk.refresh() == 4 << 20
    assert disk.low
    assert "4194304 bytes free, below min_free_disk_bytes=10485760" in disk.describe()
    waiting = asyncio.create_task(disk.wait_for_room())
    sampling = asyncio.create_task(disk.run())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    statvfs.free_bytes = 11 << 20
    async with asyncio.timeout(5):
        await waiting
    sampling.cancel()
    assert not disk.low
    assert caplog.text.count("new invocations are refused") == 1 and caplog.text.count("are accepted") == 1


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (LogFullError("the disk is full"), True),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), True),
        (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), True),
        (Exception("IO error: No space left on device: While appending to file: state/000004.log: No space left on device"), True),
        (OSError(errno.EROFS, os.strerror(errno.EROFS)), False),
        (LogError("failed to write or sync"), False),
    ],
)
def test_what_counts_as_a_full_disk(error: BaseException, full: bool) -> None:
    assert is_disk_full(error) is full
