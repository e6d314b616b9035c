"""The leader's outbox shuffle: delivers outbox messages to their partitions exactly once.

Messages leave in sequence order, each tagged (producer, seq); the receiving
partition drops a sequence it has already seen. After a group is durable in
its target partitions, the shuffle appends `OutboxTruncate` to its own
partition so the delivered messages are deleted. A new leader re-sends
whatever the outbox still holds; duplicates are harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wal.log import Log, append_runs
from wal.partitioner import partition_of
from wal.records import Envelope, OutboxTruncate, Record, RecordBody, encode_record


class OutboxShuffle:
    def __init__(
        self,
        log: Log,
        producer_id: str,
        append_own: Callable[[list[RecordBody]], Awaitable[object]],
        clock_ms: Callable[[], int],
        max_batch_messages: int = 1024,
    ) -> None:
        self._log = log
        self._producer_id = producer_id
        self._append_own = append_own
        self._clock_ms = clock_ms
        self.max_batch_messages = max_batch_messages
        self._pending: dict[int, tuple[int, RecordBody]] = {}
        self._delivered_seq = 0
        self._wake = asyncio.Event()

    def offer(self, seq: int, partition_key: int, body: RecordBody) -> None:
        if seq > self._delivered_seq:
            self._pending[seq] = (partition_key, body)
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._deliver_batch()

    async def _append_in_order(self, target: int, entries: list[bytes]) -> None:
        """Append to one partition in runs the log takes (each message on its own always fits: it was one record before)."""
        for run in append_runs(entries, self._log.max_append_bytes):
            await self._log.append(target, run)

    async def _deliver_batch(self) -> None:
        seqs = sorted(self._pending)[: self.max_batch_messages]
        now_ms = self._clock_ms()
        groups: dict[int, list[bytes]] = {}
        for seq in seqs:
            partition_key, body = self._pending[seq]
            target = partition_of(partition_key, self._log.partition_count)
            record = Record(Envelope(now_ms, 0, (self._producer_id, seq)), body)
            groups.setdefault(target, []).append(encode_record(record))
        await asyncio.gather(*(self._append_in_order(target, entries) for target, entries in groups.items()))
        for seq in seqs:
            del self._pending[seq]
        self._delivered_seq = max(self._delivered_seq, seqs[-1])
        await self._append_own([OutboxTruncate(seqs[-1])])
