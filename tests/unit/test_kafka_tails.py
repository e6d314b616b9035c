"""`SharedTails` with a stand-in consumer: a reassignment forgets what tails held ahead, and the fetcher brings it, once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from wal.kafka_tails import SharedTails

TOPIC = "duro.log"
PARTITION = TopicPartition(TOPIC, 0)


@dataclass(frozen=True)
class _Record:
    offset: int
    value: bytes


class _Consumer:
    """What `SharedTails` uses of an AIOKafkaConsumer: fetches are handed in by the test through `fetches`."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.fetches: asyncio.Queue[dict[TopicPartition, list[_Record]]] = asyncio.Queue()

    def assign(self, partitions: list[TopicPartition]) -> None:
        return None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def pause(self, partition: TopicPartition) -> None:
        return None

    def resume(self, partition: TopicPartition) -> None:
        return None

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[_Record]]:
        return await self.fetches.get()


def _log(first: int, count: int) -> list[_Record]:
    return [_Record(offset, f"e{offset}".encode()) for offset in range(first, first + count)]


async def test_a_reassignment_drops_what_a_tail_held_ahead_and_the_fetcher_brings_it_once() -> None:
    consumer = _Consumer()
    started: asyncio.Future[AIOKafkaConsumer] = asyncio.get_running_loop().create_future()
    started.set_result(cast(AIOKafkaConsumer, consumer))
    tails = SharedTails(TOPIC, 500, 1 << 20, lambda: started)
    try:
        tail = await tails.open(0, 10, 512)
        tails.acknowledged(0, 12, [b"e12", b"e13"])  # this node's run beyond 10 and 11 (another node's): held
        assert tail.merge.ahead_entries == 2 and tail.batches.empty()
        second = await tails.open(0, 5, 512)  # another tail of the partition: the consumer is reassigned and sought back
        assert consumer.seeks[-1] == (PARTITION, 5)
        assert tail.merge.ahead_entries == 0 and tail.merge.ahead_bytes == 0, "positions are forgotten: the held run is fetched again"
        consumer.fetches.put_nowait({PARTITION: _log(5, 9)})
        first_batch = await asyncio.wait_for(tail.batches.get(), 5)
        second_batch = await asyncio.wait_for(second.batches.get(), 5)
        assert first_batch == [(record.offset, record.value) for record in _log(10, 4)]
        assert second_batch == [(record.offset, record.value) for record in _log(5, 9)]
        tails.acknowledged(0, 12, [b"e12", b"e13"])  # late: both tails have them already
        assert tail.batches.empty() and second.batches.empty()
    finally:
        await tails.close(lambda _: asyncio.ensure_future(asyncio.sleep(0)))
