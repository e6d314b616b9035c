"""What only the Kafka backend of `Log` does, on a real broker: its topic, its errors, and surviving a broker restart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.kafka_broker import KafkaBroker, unavailable_reason
from tests.processes import free_port
from wal import metrics
from wal.kafka import KafkaLog, KafkaLogSettings
from wal.log import LogClosedError, LogError

SETTINGS = KafkaLogSettings(connect_timeout_ms=10_000, request_timeout_ms=10_000)


def new_topic() -> str:
    return f"kafka-log-{uuid.uuid4().hex}"


async def read(log: KafkaLog, partition: int, count: int, timeout_s: float = 20.0) -> list[tuple[int, bytes]]:
    entries: list[tuple[int, bytes]] = []
    async with asyncio.timeout(timeout_s), contextlib.aclosing(log.tail(partition, 0)) as batches:  # type: ignore[type-var]
        async for batch in batches:
            entries.extend(batch)
            if len(entries) >= count:
                return entries
    raise AssertionError("a tail never ends by itself")


async def test_topic_is_created_with_the_partition_count_and_unlimited_retention(kafka_bootstrap: str) -> None:
    topic = new_topic()
    log = await KafkaLog.open(kafka_bootstrap, topic, 3, SETTINGS)
    await log.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    assert len(description["partitions"]) == 3
    configs = {name: value for name, value, *_ in response.resources[0][4]}
    assert configs["retention.ms"] == "-1"
    assert configs["retention.bytes"] == "-1"
    assert configs["min.insync.replicas"] == "1"
    assert configs["unclean.leader.election.enable"] == "false"
    assert int(configs["max.message.bytes"]) == SETTINGS.max_batch_bytes


async def test_reopening_keeps_the_entries(kafka_bootstrap: str) -> None:
    topic = new_topic()
    log = await KafkaLog.open(kafka_bootstrap, topic, 2, SETTINGS)
    assert await log.append(1, [b"a", b"b"]) == 1
    await log.close()
    reopened = await KafkaLog.open(kafka_bootstrap, topic, 2, SETTINGS)
    try:
        assert await reopened.end_offset(1) == 2
        assert await reopened.append(1, [b"c"]) == 2
        assert await read(reopened, 1, 3) == [(0, b"a"), (1, b"b"), (2, b"c")]
    finally:
        await reopened.close()


async def test_existing_topic_with_another_partition_count_is_refused_naming_both(kafka_bootstrap: str) -> None:
    topic = new_topic()
    log = await KafkaLog.open(kafka_bootstrap, topic, 3, SETTINGS)
    await log.close()
    with pytest.raises(LogError, match=r"has 3 partitions but the log was opened with partition_count=5"):
        await KafkaLog.open(kafka_bootstrap, topic, 5, SETTINGS)


async def test_unreachable_bootstrap_is_retried_then_reported_with_the_address(caplog: pytest.LogCaptureFixture) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = KafkaLogSettings(connect_timeout_ms=1_500, max_connect_backoff_ms=400)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="wal.kafka_topic"),
        pytest.raises(LogError, match=f"could not reach Kafka at {address} .* within 1500 ms") as raised,
    ):
        await KafkaLog.open(address, new_topic(), 1, settings)
    elapsed_s = time.monotonic() - started
    assert 1.4 <= elapsed_s < 5.0, f"open must retry until connect_timeout_ms and then stop, took {elapsed_s:.1f}s"
    retries = [record for record in caplog.records if address in record.getMessage() and "retrying" in record.getMessage()]
    assert len(retries) >= 3, f"each failed attempt must be logged with the address: {[r.getMessage() for r in caplog.records]}"
    assert "attempts" in str(raised.value)


async def test_append_larger_than_max_append_bytes_is_refused(kafka_bootstrap: str) -> None:
    log = await KafkaLog.open(kafka_bootstrap, new_topic(), 1, KafkaLogSettings(max_append_bytes=64 * 1024, max_group_bytes=16 * 1024))
    try:
        with pytest.raises(ValueError, match="max_append_bytes=65536"):
            await log.append(0, [bytes(40 * 1024), bytes(40 * 1024)])
        assert await log.append(0, [bytes(60 * 1024)]) == 0
        assert await log.end_offset(0) == 1
    finally:
        await log.close()


async def test_two_writers_to_one_partition_each_tail_yields_exactly_the_log_order(kafka_bootstrap: str) -> None:
    """Two logs (two nodes) append to one partition at once; each one's tail takes its own entries at their acknowledgement
    and the other's from the fetcher, and yields exactly what a plain consumer reads, in the same order, each once."""
    topic = new_topic()
    logs = [await KafkaLog.open(kafka_bootstrap, topic, 1, SETTINGS) for _ in range(2)]
    runs_per_writer = 150
    seen: list[list[tuple[int, bytes]]] = [[], []]
    warmed_up = [asyncio.Event(), asyncio.Event()]

    async def collect(index: int, total: int) -> None:
        async with contextlib.aclosing(logs[index].tail(0, 0)) as batches:  # type: ignore[type-var]
            async for batch in batches:
                seen[index].extend(batch)
                if len(seen[index]) >= 2:
                    warmed_up[index].set()
                if len(seen[index]) >= total:
                    return

    async def write(index: int) -> int:
        rng = random.Random(index)
        written = 0
        for run in range(runs_per_writer):
            size = rng.randint(1, 3)
            await logs[index].append(0, [f"writer{index}-run{run}-{entry}".encode() for entry in range(size)])
            written += size
        return written

    acknowledged_before = metrics.tail_entries.labels(metrics.TAIL_SOURCE_ACKNOWLEDGED)._value.get()
    fetched_before = metrics.tail_entries.labels(metrics.TAIL_SOURCE_FETCHED)._value.get()
    try:
        for index, log in enumerate(logs):
            await log.append(0, [f"writer{index}-warm-up".encode()])
        total = [2]  # read by the collectors once the writers are done
        collectors = [asyncio.create_task(collect(index, 10**9)) for index in range(2)]
        async with asyncio.timeout(30):
            await asyncio.gather(*(event.wait() for event in warmed_up))  # both tails run: the appends below reach them by both paths
            total[0] += sum(await asyncio.gather(write(0), write(1)))
            while any(len(entries) < total[0] for entries in seen):
                await asyncio.sleep(0.05)
        for collector in collectors:
            collector.cancel()
        await asyncio.gather(*collectors, return_exceptions=True)
    finally:
        for log in logs:
            await log.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        in_the_log: list[tuple[int, bytes]] = []
        async with asyncio.timeout(30):
            while len(in_the_log) < total[0]:
                fetched = await consumer.getmany(timeout_ms=1000)
                in_the_log.extend((record.offset, record.value) for records in fetched.values() for record in records)
    finally:
        await consumer.stop()
    assert [offset for offset, _ in in_the_log] == list(range(total[0]))
    writers_in_log_order = [value.split(b"-")[0] for _, value in in_the_log]
    assert writers_in_log_order.count(b"writer0") >= runs_per_writer and writers_in_log_order.count(b"writer1") >= runs_per_writer
    switches = sum(1 for before, after in itertools.pairwise(writers_in_log_order) if before != after)
    assert switches > 10, f"the writers' runs hardly interleave ({switches} switches): the test would not test the merge"
    assert seen[0] == in_the_log
    assert seen[1] == in_the_log
    acknowledged = metrics.tail_entries.labels(metrics.TAIL_SOURCE_ACKNOWLEDGED)._value.get() - acknowledged_before
    fetched = metrics.tail_entries.labels(metrics.TAIL_SOURCE_FETCHED)._value.get() - fetched_before
    assert acknowledged > 0, "no tail took an entry at its acknowledgement"
    assert fetched > 0
    assert acknowledged + fetched == 2 * total[0], "every entry reached each of the two tails exactly once"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test alone, which it may stop and start."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_broker_restart_while_appending_loses_nothing_acknowledged(own_broker: KafkaBroker) -> None:
    """Appenders and a tail run while the broker is down ~10 s; appends resume, every acknowledged entry is there, in order.

    A second log with a short `append_timeout_ms` sees its append fail during
    the outage, and appends again once the broker is back. The first log's
    `request_timeout_ms` (5 s) is shorter than the outage: its appends must
    still wait, up to `append_timeout_ms` (a producer that dropped its unsent
    batches after the request timeout failed them with LeaderNotAvailableError).
    """
    log = await KafkaLog.open(own_broker.bootstrap, new_topic(), 2, KafkaLogSettings(append_timeout_ms=60_000, request_timeout_ms=5_000))
    impatient = await KafkaLog.open(own_broker.bootstrap, new_topic(), 1, KafkaLogSettings(append_timeout_ms=2_000))
    acknowledged: dict[tuple[int, int], bytes] = {}
    failures: list[BaseException] = []
    restarted = asyncio.Event()
    acknowledged_after_restart = 0

    async def appender(task: int) -> None:
        nonlocal acknowledged_after_restart
        partition, previous = task % 2, -1
        for index in range(100_000):
            entry = f"task{task}-entry{index}".encode()
            try:
                offset = await log.append(partition, [entry])
            except LogError as error:
                failures.append(error)
                await asyncio.sleep(0.1)
                continue
            assert offset > previous, "one appender's offsets must grow"
            previous = offset
            acknowledged[(partition, offset)] = entry
            if restarted.is_set():
                acknowledged_after_restart += 1
                if acknowledged_after_restart >= 400:
                    return
            await asyncio.sleep(0.005)

    tailed: list[tuple[int, bytes]] = []

    async def follow_partition_0() -> None:
        async with contextlib.aclosing(log.tail(0, 0)) as batches:  # type: ignore[type-var]
            async for batch in batches:
                tailed.extend(batch)

    tail = asyncio.create_task(follow_partition_0())
    appenders = [asyncio.create_task(appender(task)) for task in range(4)]
    try:
        async with asyncio.timeout(20):
            while len(acknowledged) < 200:
                await asyncio.sleep(0.01)
        await asyncio.to_thread(own_broker.stop)
        outage_started = time.monotonic()
        before_outage = len(acknowledged)
        with pytest.raises(LogError, match="was not acknowledged within append_timeout_ms=2000"):
            await impatient.append(0, [b"during"])
        await asyncio.sleep(10 - (time.monotonic() - outage_started))
        assert len(acknowledged) == before_outage, "nothing can be acknowledged while the broker is down"
        await asyncio.to_thread(own_broker.start)
        restarted.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*appenders)
            after = await impatient.append(0, [b"after"])
        assert not failures, f"appends must wait out a 10 s outage within append_timeout_ms, got {failures[:3]}"
        expected_impatient = [(0, b"during"), (1, b"after")] if after == 1 else [(0, b"after")]
        assert await read(impatient, 0, after + 1) == expected_impatient, (
            "an append that timed out is written whole or not at all, before later ones"
        )
        for partition in range(2):
            offsets = sorted(offset for p, offset in acknowledged if p == partition)
            assert offsets == list(range(len(offsets))), "acknowledged offsets must be dense"
            assert await log.end_offset(partition) == len(offsets)
            assert await read(log, partition, len(offsets)) == [(offset, acknowledged[(partition, offset)]) for offset in offsets]
        expected = [(offset, acknowledged[(0, offset)]) for offset in range(sum(1 for p, _ in acknowledged if p == 0))]
        async with asyncio.timeout(20):
            while len(tailed) < len(expected):
                assert not tail.done(), f"the tail through the outage ended: {tail.exception() if tail.done() else None!r}"
                await asyncio.sleep(0.05)
        assert tailed == expected, "a tail running through the outage must see every entry once, in order"
    finally:
        for task in [*appenders, tail]:
            task.cancel()
        await log.close()
        await impatient.close()


async def test_close_wakes_tails_and_end_offset_waiting_on_a_stopped_broker(own_broker: KafkaBroker) -> None:
    """With the broker gone and Kafka timeouts of two minutes, `close` still ends every wait at once with LogClosedError.

    One tail was following (waiting for entries), one was starting (asking the
    broker where its partition starts), and an `end_offset` call was waiting for
    metadata: a node shutting down must not hang on any of them.
    """
    patient = KafkaLogSettings(connect_timeout_ms=120_000, request_timeout_ms=120_000, max_connect_backoff_ms=200)
    log = await KafkaLog.open(own_broker.bootstrap, new_topic(), 1, patient)
    closed = False
    try:
        await log.append(0, [b"a"])
        first_read = asyncio.Event()

        async def follow() -> None:
            async with contextlib.aclosing(log.tail(0, 0)) as batches:  # type: ignore[type-var]
                async for _ in batches:
                    first_read.set()

        following = asyncio.create_task(follow())
        async with asyncio.timeout(20):
            await first_read.wait()
        await asyncio.to_thread(own_broker.stop)
        starting = asyncio.create_task(read(log, 0, 1, timeout_s=60))
        asking = asyncio.create_task(log.end_offset(0))
        async with asyncio.timeout(30):
            while len(log._waits) < 2:  # both wait on the broker that is gone
                await asyncio.sleep(0.05)
        assert not asking.done(), "end_offset cannot be answered while the broker is down"
        started = time.monotonic()
        async with asyncio.timeout(20):
            await log.close()
            closed = True
            outcomes = await asyncio.gather(following, starting, asking, return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [LogClosedError] * 3, outcomes
        assert time.monotonic() - started < 20
    finally:
        if not closed:
            await log.close()


async def test_a_producer_whose_state_the_brokers_lost_is_replaced(kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """After OutOfOrderSequenceNumber (as when a broker crashed before syncing the producer's state) the log renews its producer.

    The fault is injected by moving the producer's next sequence number of the
    partition ahead, which is what the broker sees when it lost batches it had
    acknowledged. The rejected append is sent again on the new producer (it was
    not written), and the offsets stay dense.
    """
    log = await KafkaLog.open(kafka_bootstrap, new_topic(), 1, SETTINGS)
    try:
        assert await log.append(0, [b"before"]) == 0
        producer = log._producer
        producer._txn_manager.increment_sequence_number(TopicPartition(log.topic, 0), 5)  # the fault: a gap of five sequence numbers
        with caplog.at_level(logging.WARNING, logger="wal.kafka"):
            assert await log.append(0, [b"rejected, then sent again"]) == 1
        assert any("OutOfOrderSequenceNumber" in record.getMessage() and "new producer" in record.getMessage() for record in caplog.records)
        assert log._producer is not producer
        assert await log.append(0, [b"after"]) == 2
        assert await read(log, 0, 3) == [(0, b"before"), (1, b"rejected, then sent again"), (2, b"after")]
    finally:
        await log.close()
