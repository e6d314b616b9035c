"""The subscription consumer's append of one partition's share of a batch (the rest needs a broker: tests/e2e)."""

from __future__ import annotations

import types

from ingress.subscription_consumer import SubscriptionConsumer
from wal.memory import MemoryLog


async def test_a_share_larger_than_one_append_is_appended_in_runs_in_order() -> None:
    log = MemoryLog(2, max_append_bytes=64 * 1024)
    share = [bytes([n]) * 20_000 for n in range(10)]  # 200 KB in all: each event fits an append, the ten together do not
    consumer = types.SimpleNamespace(_log=log)  # `_append_after` uses the consumer's log alone
    await SubscriptionConsumer._append_after(consumer, None, 1, share)  # type: ignore[arg-type]  # a stand-in consumer
    assert await _entries(log, 1) == share


async def _entries(log: MemoryLog, partition: int) -> list[bytes]:
    end = await log.end_offset(partition)
    entries: list[bytes] = []
    async for batch in log.tail(partition, 0):
        entries.extend(entry for _, entry in batch)
        if batch[-1][0] >= end - 1:
            return entries
    return entries
