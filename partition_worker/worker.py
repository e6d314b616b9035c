"""The node's partition worker: runs one processor per partition the node owns, and starts or stops them as ownership changes.

Ownership comes from outside (all partitions on the embedded log; the Kafka
consumer group's assignment on Kafka). A processor that is revoked stops
applying and leading at once; whatever it still appends afterwards carries its
superseded epoch and takes no effect.

`suspend` stops every processor and holds the assignment until `resume`
starts them again, on a reopened state store: how the node rides out a full
disk (a RocksDB that failed a write refuses every later one until reopened).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from partition_worker import metrics
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.store import RocksDatabase
from wal.disk_space import is_disk_full
from wal.log import Log
from wal.records import IngressSink
from wal.replies import Reply

log = logging.getLogger("duro.worker")


class PartitionWorker:
    def __init__(
        self,
        node_id: int,
        log_: Log,
        database: RocksDatabase,
        invoker: Invoker,
        deliver_reply: Callable[[IngressSink, Reply], object],
        config_for: Callable[[int], StateMachineConfig],
        settings: ProcessorSettings,
        on_failure: Callable[[BaseException], None],
        restore: Callable[[int, int], Awaitable[object]] | None = None,
    ) -> None:
        self.node_id = node_id
        self._log = log_
        self._database = database
        self._invoker = invoker
        self._deliver_reply = deliver_reply
        self._config_for = config_for
        self._settings = settings
        self._on_failure = on_failure
        self._restore = restore  # brings a partition's store up to its newest snapshot before its processor applies
        self.processors: dict[int, PartitionProcessor] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._suspended: set[int] | None = None  # while suspended: the partitions to run again on resume
        self._changed = asyncio.Event()  # replaced (and the old one set) whenever the set of processors changes

    @property
    def owned(self) -> set[int]:
        return set(self._suspended) if self._suspended is not None else set(self.processors)

    @property
    def suspended(self) -> bool:
        return self._suspended is not None

    def _note_change(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def assign(self, partitions: set[int]) -> None:
        """Start processors for the partitions not yet running here (while suspended: run them on resume)."""
        if self._suspended is not None:
            self._suspended |= partitions
            return
        self._note_change()
        for partition in sorted(partitions - self.owned):
            processor = PartitionProcessor(
                partition,
                self.node_id,
                self._log,
                self._database.partition(partition),
                StateMachine(self._config_for(partition)),
                self._invoker,
                self._deliver_reply,
                self._settings,
                restore=self._restore,
            )
            task = asyncio.create_task(processor.run(), name=f"partition {partition}")
            task.add_done_callback(self._on_done)
            self.processors[partition] = processor
            self._tasks[partition] = task
        log.info("node %d runs partitions %s", self.node_id, sorted(self.owned))

    async def revoke(self, partitions: set[int]) -> None:
        """Stop the processors of partitions this node no longer owns, and wait for them."""
        if self._suspended is not None:
            self._suspended -= partitions
        self._note_change()
        stopping = [self._tasks.pop(p) for p in partitions if p in self._tasks]
        for partition in partitions:
            self.processors.pop(partition, None)
            metrics.forget_partition(partition)
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)

    def partitions_without_leader(self) -> list[int]:
        """Owned partitions that this node does not lead with working leader tasks (catching up, re-claiming, suspended): not ready."""
        if self._suspended is not None:
            return sorted(self._suspended)
        return sorted(p for p, processor in self.processors.items() if not processor.has_working_leader)

    async def suspend(self) -> None:
        """Stop every processor and hold the assignment (assign/revoke still change it) until `resume`."""
        owned = self.owned
        await self.revoke(set(self._tasks))
        self._suspended = owned

    def resume(self, database: RocksDatabase) -> None:
        """Run the held assignment again, on `database` (a reopened state store)."""
        assert self._suspended is not None, "resume follows suspend"
        wanted, self._suspended = self._suspended, None
        self._database = database
        self.assign(wanted)

    async def wait_leading(self, timeout_s: float | None = None) -> None:
        """Wait until every owned partition has caught up and leads (through suspensions and reassignments)."""

        async def everyone_leads() -> None:
            while True:
                changed: asyncio.Future[object] = asyncio.ensure_future(self._changed.wait())
                leading: asyncio.Future[object] = asyncio.ensure_future(
                    asyncio.gather(*(p.leading.wait() for p in self.processors.values()))
                )
                done, _ = await asyncio.wait([changed, leading], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                leading.cancel()
                if leading in done and self._suspended is None:
                    return

        await asyncio.wait_for(everyone_leads(), timeout_s)

    async def close(self) -> None:
        await self.revoke(set(self._tasks) | self.owned)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if is_disk_full(exc):  # the node waits it out (duro.disk_full): no traceback
                log.error("%s stopped: the disk is full: %s", task.get_name(), exc)
            else:
                log.critical("%s stopped: %r", task.get_name(), exc, exc_info=exc)
            self._on_failure(exc)
