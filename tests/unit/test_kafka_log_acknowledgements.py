"""`KafkaLog` settling appends from the producer's acknowledgements, with a stand-in producer (no broker)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from wal.kafka import KafkaLog, KafkaLogSettings
from wal.log import AppendOutcomeUnknownError


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, key: None, value: bytes, timestamp: None) -> object:
        self.values.append(value)
        return object()


class _Producer:
    """Acknowledges each batch with the next of `base_offsets` (as aiokafka's batch future does: RecordMetadata.offset)."""

    def __init__(self, base_offsets: list[int]) -> None:
        self._base_offsets = iter(base_offsets)
        self.sent: list[list[bytes]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append(batch.values)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=next(self._base_offsets)))
        return delivery


def _log(producer: _Producer) -> KafkaLog:
    return KafkaLog("127.0.0.1:1", "t", 1, KafkaLogSettings(), cast(Any, producer), cast(Any, None))


async def test_an_append_returns_the_offset_of_its_last_entry_from_the_batch_base_offset() -> None:
    producer = _Producer([0, 3])
    log = _log(producer)
    assert await log.append(0, [b"a", b"b", b"c"]) == 2
    assert await log.append(0, [b"d", b"e"]) == 4
    assert producer.sent == [[b"a", b"b", b"c"], [b"d", b"e"]]


async def test_an_acknowledgement_without_offsets_fails_the_append_saying_it_is_written() -> None:
    """aiokafka resolves a DUPLICATE_SEQUENCE_NUMBER answer with offset -1: the append is written, where is unknown."""
    log = _log(_Producer([-1, 7]))
    async with asyncio.timeout(10):  # before, the writer died on an assertion and the append never settled
        with pytest.raises(AppendOutcomeUnknownError, match=r"duplicate of a batch they hold, without its offsets: it is written once"):
            await log.append(0, [b"a"])
        assert await log.append(0, [b"b"]) == 7  # the writer lives on


class _SilentProducer(_Producer):
    """Takes batches and never acknowledges them (a broker that does not answer in time)."""

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append(batch.values)
        return asyncio.get_running_loop().create_future()


async def test_an_append_not_acknowledged_in_time_has_an_unknown_outcome() -> None:
    """The batch may still be written by the producer's retries: the ingress must not answer 'not recorded' (README, known outcomes)."""
    log = KafkaLog("127.0.0.1:1", "t", 1, KafkaLogSettings(append_timeout_ms=50), cast(Any, _SilentProducer([])), cast(Any, None))
    async with asyncio.timeout(10):
        with pytest.raises(AppendOutcomeUnknownError, match=r"not acknowledged within append_timeout_ms=50; it may still be written"):
            await log.append(0, [b"a"])
