"""The leader's outbox shuffle: delivers outbox messages to their partitions exactly once.

Messages leave in sequence order, each tagged (producer, seq); the receiving
partition drops a sequence it has already seen. After a group is durable in
its target partitions, the shuffle appends `OutboxTruncate` to its own
partition so the delivered messages are deleted. A new leader re-sends
whatever the outbox still holds; duplicates are harmless.

An append to a target partition that fails (its owner is a worker process of
the node that is restarting, say) is tried again, what the batch has for that
partition, after a backoff doubling from `retry_initial_backoff_ms` to
`retry_max_backoff_ms`, for as long as this node leads (stepping down cancels
the shuffle); the partitions that took their share are not sent it again, and
a run that landed before the failure is dropped there as a duplicate. The log
closing, or a record too large for it, ends the shuffle (the processor steps
down), whichever target it happened on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from wal.log import AppendTooLargeError, Log, LogClosedError, LogError, append_runs
from wal.partitioner import partition_of
from wal.records import Envelope, OutboxTruncate, Record, RecordBody, encode_record

log = logging.getLogger("duro.outbox")


class OutboxShuffle:
    def __init__(
        self,
        log: Log,
        producer_id: str,
        append_own: Callable[[list[RecordBody]], Awaitable[object]],
        clock_ms: Callable[[], int],
        max_batch_messages: int = 1024,
        retry_initial_backoff_ms: int = 100,
        retry_max_backoff_ms: int = 10_000,
    ) -> None:
        self._log = log
        self._retry_initial_backoff_ms = retry_initial_backoff_ms
        self._retry_max_backoff_ms = retry_max_backoff_ms
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
        backoff_ms = self._retry_initial_backoff_ms
        while groups:
            targets = list(groups)
            results = await asyncio.gather(*(self._append_in_order(target, groups[target]) for target in targets), return_exceptions=True)
            failures = {target: result for target, result in zip(targets, results, strict=True) if isinstance(result, BaseException)}
            for error in failures.values():
                if not isinstance(error, LogError) or isinstance(error, LogClosedError | AppendTooLargeError):
                    raise error
            groups = {target: groups[target] for target in failures}  # the others landed: not sent again
            if not groups:
                break
            target, error = next(iter(failures.items()))
            log.warning(
                "outbox messages %d to %d not delivered to partition %d (%s); trying again in %d ms",
                seqs[0], seqs[-1], target, error, backoff_ms,
            )  # fmt: skip
            await asyncio.sleep(backoff_ms / 1000)
            backoff_ms = min(2 * backoff_ms, self._retry_max_backoff_ms)
        for seq in seqs:
            del self._pending[seq]
        self._delivered_seq = max(self._delivered_seq, seqs[-1])
        await self._append_own([OutboxTruncate(seqs[-1])])
