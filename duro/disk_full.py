"""Riding out a full disk: the partitions stop applying until space returns, then run again on a reopened state store.

RocksDB refuses every write after one failed for want of space, until it is
reopened; a processor whose append or commit failed that way ends. Instead of
stopping the node, `DiskFullRecovery` suspends the partition worker (reads of
applied state, the admin API and health go on; the ingress answers 507 to new
work), waits until the disk has `min_free_disk_bytes` free again, reopens the
state store and resumes the worker: each partition catches up from its applied
offset, as after a restart, and waiting requests get their replies through
their nudges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from duro.lifecycle import Lifecycle
from partition_worker.store import RocksDatabase
from partition_worker.worker import PartitionWorker
from wal.disk_space import DiskSpace

log = logging.getLogger("duro.disk")


class DiskFullRecovery:
    """Suspends the worker on a full disk and resumes it on a reopened store once space returns; owns the current store."""

    def __init__(self, disk: DiskSpace, database: RocksDatabase, open_store: Callable[[], RocksDatabase], lifecycle: Lifecycle) -> None:
        self.worker: PartitionWorker | None = None  # set once the worker exists
        self._disk = disk
        self.database = database
        self._open_store = open_store
        self._lifecycle = lifecycle
        self._task: asyncio.Task[None] | None = None
        self._store_open = True
        self.recoveries = 0

    @property
    def recovering(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, error: BaseException) -> None:
        """A partition stopped because the disk is full: suspend every partition until space returns (once at a time)."""
        if self.recovering or self._lifecycle.stop_requested.is_set():
            return
        log.error(
            "the disk holding %s is full (%s): partitions stop applying until %d bytes are free again; reads, health and the"
            " admin API go on, new invocations are answered 507",
            self._disk.path, error, self._disk.min_free_bytes,
        )  # fmt: skip
        self._task = asyncio.create_task(self._recover(), name="disk-full recovery")
        self._task.add_done_callback(self._on_done)

    async def _recover(self) -> None:
        assert self.worker is not None, "a partition failed, so the worker exists"
        await self.worker.suspend()
        self._close_store()
        interval_s = self._disk.check_interval_ms / 1000
        failed_opens = 0
        while True:
            self._disk.refresh()
            await self._disk.wait_for_room()
            try:
                self.database = self._open_store()
                break
            except Exception as error:  # still no room for RocksDB to open (it flushes its log into a new file): wait again
                if failed_opens == 0:
                    log.warning("reopening the state store failed (%r); trying again every %d ms", error, self._disk.check_interval_ms)
                failed_opens += 1
                await asyncio.sleep(interval_s)
        self._store_open = True
        assert self.worker is not None, "a partition failed, so the worker exists"
        self.worker.resume(self.database)
        self.recoveries += 1
        log.info(
            "the disk has %d bytes free again: partitions run again on the reopened state store (%d failed reopens before)",
            self._disk.free_bytes, failed_opens,
        )  # fmt: skip

    def _close_store(self) -> None:
        if not self._store_open:
            return
        self._store_open = False
        try:
            self.database.close()
        except Exception as error:  # the store that failed a write may fail its close too; what it holds is in the log
            log.warning("closing the state store after the full disk failed: %r", error)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._lifecycle.fail(f"recovering from a full disk failed: {error!r}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._close_store()
