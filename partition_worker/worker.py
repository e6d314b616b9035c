"""The node's partition worker: runs one processor per partition the node owns, and starts or stops them as ownership changes.

Ownership comes from outside (all partitions on the embedded log; the Kafka
consumer group's assignment on Kafka). A processor that is revoked stops
applying and leading at once; whatever it still appends afterwards carries its
superseded epoch and takes no effect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from partition_worker import metrics
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.store import RocksDatabase
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
    ) -> None:
        self.node_id = node_id
        self._log = log_
        self._database = database
        self._invoker = invoker
        self._deliver_reply = deliver_reply
        self._config_for = config_for
        self._settings = settings
        self._on_failure = on_failure
        self.processors: dict[int, PartitionProcessor] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    @property
    def owned(self) -> set[int]:
        return set(self.processors)

    def assign(self, partitions: set[int]) -> None:
        """Start processors for the partitions not yet running here."""
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
            )
            task = asyncio.create_task(processor.run(), name=f"partition {partition}")
            task.add_done_callback(self._on_done)
            self.processors[partition] = processor
            self._tasks[partition] = task
        log.info("node %d runs partitions %s", self.node_id, sorted(self.owned))

    async def revoke(self, partitions: set[int]) -> None:
        """Stop the processors of partitions this node no longer owns, and wait for them."""
        stopping = [self._tasks.pop(p) for p in partitions if p in self._tasks]
        for partition in partitions:
            self.processors.pop(partition, None)
            metrics.forget_partition(partition)
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)

    def partitions_without_leader(self) -> list[int]:
        """Owned partitions that this node does not lead with working leader tasks (catching up, re-claiming): not ready."""
        return sorted(p for p, processor in self.processors.items() if not processor.has_working_leader)

    async def wait_leading(self, timeout_s: float | None = None) -> None:
        """Wait until every owned partition has caught up and leads."""
        await asyncio.wait_for(asyncio.gather(*(p.leading.wait() for p in self.processors.values())), timeout_s)

    async def close(self) -> None:
        await self.revoke(self.owned)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("%s stopped: %r", task.get_name(), exc, exc_info=exc)
            self._on_failure(exc)
