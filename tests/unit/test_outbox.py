"""The outbox shuffle: a delivery another partition refuses is tried again (the batch, deduplicated where it landed); a closed log ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from partition_worker.outbox import OutboxShuffle
from wal.log import AppendTooLargeError, LogClosedError, LogError
from wal.memory import MemoryLog
from wal.partitioner import partition_key_range
from wal.records import Cancel, OutboxTruncate, RecordBody, decode_record

PARTITIONS = 2


class RefusingLog(MemoryLog):
    """Appends to `partition` fail with `error` the first `times` times (more partitions: `refuse`)."""

    def __init__(self, partition: int, times: int, error: LogError) -> None:
        super().__init__(PARTITIONS)
        self.refusals: dict[int, tuple[int, LogError]] = {}
        self.refuse(partition, times, error)

    def refuse(self, partition: int, times: int, error: LogError) -> None:
        self.refusals[partition] = (times, error)

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        times, error = self.refusals.get(partition, (0, LogError("")))
        if times > 0:
            self.refusals[partition] = (times - 1, error)
            raise error
        return await super().append(partition, entries)


async def _deliver(log: RefusingLog) -> list[list[RecordBody]]:
    truncated: list[list[RecordBody]] = []
    done = asyncio.Event()

    async def append_own(bodies: list[RecordBody]) -> None:
        truncated.append(bodies)
        done.set()

    shuffle = OutboxShuffle(log, "p9", append_own, lambda: 0, retry_initial_backoff_ms=1, retry_max_backoff_ms=4)
    for seq, partition in ((1, 0), (2, 1), (3, 1)):
        shuffle.offer(seq, partition_key_range(partition, PARTITIONS)[0], Cancel(f"inv-{seq}"))
    task = asyncio.create_task(shuffle.run())
    try:
        async with asyncio.timeout(10):
            await asyncio.wait([task, asyncio.ensure_future(done.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
    finally:
        task.cancel()
    return truncated


async def _seqs(log: MemoryLog, partition: int) -> list[int]:
    seqs = []
    async for batch in log.tail(partition, 0):
        for _, entry in batch:
            dedup = decode_record(entry).envelope.dedup
            assert dedup is not None and dedup[0] == "p9"
            seqs.append(dedup[1])
        if len(seqs) >= await log.end_offset(partition):
            return seqs
    return seqs


async def test_a_refused_delivery_is_tried_again_until_it_lands_then_the_outbox_is_truncated_once() -> None:
    log = RefusingLog(1, 3, LogError("worker 1 does not accept connections"))
    truncated = await _deliver(log)
    assert truncated == [[OutboxTruncate(3)]]
    assert await _seqs(log, 1) == [2, 3]
    assert await _seqs(log, 0) == [1], "partition 0 took its message at the first try: it is not sent again"


async def test_a_closed_log_ends_the_shuffle() -> None:
    log = RefusingLog(1, 1, LogClosedError("closed"))
    with pytest.raises(LogClosedError):
        await _deliver(log)


async def test_a_record_too_large_for_one_target_ends_the_shuffle_even_while_another_target_refuses() -> None:
    log = RefusingLog(0, 1_000, LogError("worker 0 does not accept connections"))
    log.refuse(1, 1_000, AppendTooLargeError("over max_append_bytes"))
    with pytest.raises(AppendTooLargeError):
        await _deliver(log)
