"""`KafkaLog`: the `Log` on Apache Kafka, one topic whose partitions are duro's partitions, through aiokafka.

Appends go through one idempotent producer with acks=all. Each partition has at
most one record batch in flight: appends that arrive meanwhile queue up and are
sent together as the next batch (group commit), so one append is always one
contiguous run of offsets, written whole or not at all, and an append returns
the offset of its last entry once the in-sync replicas hold it.

All tails share one consumer with manual assignment of the tailed partitions (no
consumer group, `wal.kafka_tails`): one fetch serves every partition with new
records. An acknowledged append is also handed to the tails of its partition at
once, at the offsets the acknowledgement gives, so the node applies its own
records without waiting for the fetcher to bring them back; each tail still
yields strictly the log's order (`wal.kafka_tail_merge`). `end_offset` asks the brokers through another shared consumer. Offsets
are Kafka's offsets, dense as long as only duro writes to the topic (no
transactions, no compaction).

If the brokers lose the producer's idempotence state (a broker that crashed
before syncing it answers OutOfOrderSequenceNumber or UnknownProducerId), the
log starts a new producer and sends the rejected batch once more: an aiokafka
producer would fail every later batch of that partition the same way.

Every wait on Kafka (a tail's consumer starting, its start bound, its fetches,
`end_offset`) runs as a task that `close` cancels, so closing wakes every waiter
at once with LogClosedError instead of leaving it to a Kafka request timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import InvalidProducerEpoch, KafkaError, OutOfOrderSequenceNumber, ProducerClosed, UnknownProducerId

from wal.append_budget import AppendBudget
from wal.kafka_settings import DEFAULT_TOPIC, KafkaLogSettings, framed_bytes_of
from wal.kafka_tails import SharedTails
from wal.kafka_topic import bootstrap_text, check_topic_name, connect_deadline, ensure_topic, start_with_retry, stop_consumer
from wal.log import AppendOutcomeUnknownError, AppendTooLargeError, LogClosedError, LogError, LogTrimmedError
from wal.log_arguments import check_partition, check_partition_count, check_tail_arguments, entries_as_bytes
from wal.metrics import AppendMeter

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TOPIC", "KafkaLog", "KafkaLogSettings"]

Result = TypeVar("Result")

# The brokers lost or refuse the producer's idempotence state (a broker that crashed before it synced it, for
# example): an idempotent aiokafka producer never recovers from these by itself, every later batch fails the same way.
_LOST_PRODUCER_STATE = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)


@dataclass(slots=True)
class _PendingAppend:
    entries: list[bytes]
    framed_bytes: int
    result: asyncio.Future[int]
    started: float  # time.perf_counter() when it was queued


class KafkaLog:
    """A `Log` on one Kafka topic. Make it with `KafkaLog.open`; `close` it when done."""

    def __init__(
        self,
        bootstrap: str | list[str],
        topic: str,
        partition_count: int,
        settings: KafkaLogSettings,
        producer: AIOKafkaProducer,
        offsets: AIOKafkaConsumer,
    ) -> None:
        """Use `KafkaLog.open`, which checks the arguments, makes sure the topic exists and starts the clients."""
        self._bootstrap = bootstrap
        self._topic = topic
        self._partition_count = partition_count
        self._settings = settings
        self._producer = producer
        self._producer_renewal = asyncio.Lock()
        self._offsets = offsets
        self._budget = AppendBudget(settings.max_pending_appends, settings.max_pending_bytes)
        self._queues: dict[int, deque[_PendingAppend]] = {}
        self._writers: dict[int, asyncio.Task[None]] = {}
        self._last_offsets: dict[int, int] = {}
        self._tails = SharedTails(
            topic, settings.max_fetch_wait_ms, settings.max_tail_ahead_bytes, lambda: asyncio.ensure_future(self._start_tail_consumer())
        )
        self._waits: set[asyncio.Future[Any]] = set()  # one per pending wait on Kafka, of any result type
        self._closed = False
        self._meter = AppendMeter("kafka")
        self._admin: AIOKafkaAdminClient | None = None  # for DeleteRecords, started by the first trim
        self._trimmed: dict[int, int] = {}  # partition -> offset below which DeleteRecords was acknowledged

    @classmethod
    async def open(
        cls, bootstrap: str | list[str], topic: str = DEFAULT_TOPIC, partition_count: int = 1, settings: KafkaLogSettings | None = None
    ) -> KafkaLog:
        """Connect to the brokers at `bootstrap` ("host:port" or a list of them), create `topic` if missing, start the clients.

        Retries an unreachable bootstrap server (logging each attempt with its
        address) until `settings.connect_timeout_ms`, then raises LogError; an
        existing topic with another partition count raises LogError naming both.
        """
        check_partition_count(partition_count)
        check_topic_name(topic)
        if not bootstrap or not isinstance(bootstrap, (str, list)):
            raise ValueError(f"bootstrap must be 'host:port' or a non-empty list of them, got {bootstrap!r}")
        settings = settings or KafkaLogSettings()
        deadline = connect_deadline(settings)
        await ensure_topic(bootstrap, topic, partition_count, settings, deadline)
        producer = await start_with_retry(
            lambda: _new_producer(bootstrap, settings),
            AIOKafkaProducer.start,
            AIOKafkaProducer.stop,
            "producer",
            bootstrap,
            settings,
            deadline,
        )
        try:
            offsets = await start_with_retry(
                lambda: _new_consumer(bootstrap, settings, "offsets"),
                AIOKafkaConsumer.start,
                stop_consumer,
                "offsets consumer",
                bootstrap,
                settings,
                deadline,
            )
        except BaseException:
            await producer.stop()
            raise
        try:
            await _wait_until_partitions_serve(offsets, topic, partition_count, settings)
        except BaseException:
            await asyncio.gather(producer.stop(), stop_consumer(offsets))
            raise
        logger.info("opened Kafka log: topic %s with %d partitions at %s", topic, partition_count, bootstrap_text(bootstrap))
        return cls(bootstrap, topic, partition_count, settings, producer, offsets)

    @property
    def max_append_bytes(self) -> int:
        return self._settings.max_append_bytes

    @property
    def partition_count(self) -> int:
        return self._partition_count

    @property
    def topic(self) -> str:
        return self._topic

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        """Append entries to one partition as one contiguous run; return the offset of the last one once acknowledged (acks=all).

        Raises LogClosedError if the log closes before the entries were handed to
        the producer, LogError if Kafka did not acknowledge them within
        `append_timeout_ms` (they may still be written). Cancelling the call does
        not withdraw entries already queued.
        """
        check_partition(partition, self._partition_count)
        payloads = entries_as_bytes(entries)
        framed_bytes = framed_bytes_of(payloads)
        if framed_bytes > self._settings.max_append_bytes:
            raise AppendTooLargeError(
                f"an append may hold at most max_append_bytes={self._settings.max_append_bytes} "
                f"(payloads plus 32 bytes per entry), got {framed_bytes} in {len(payloads)} entries"
            )
        self._raise_if_closed()
        await self._budget.acquire(framed_bytes)
        if self._closed:
            self._budget.release(framed_bytes)
            self._raise_if_closed()
        pending = _PendingAppend(payloads, framed_bytes, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._queues.setdefault(partition, deque()).append(pending)
        self._start_writer(partition)
        return await pending.result

    def tail(self, partition: int, from_offset: int, max_batch_entries: int = 512) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """Yield batches of (offset, entry) from `from_offset` on, forever; raises LogClosedError when the log closes.

        A tail from beyond the end waits for the entries up to `from_offset` and
        yields from there. Cancelling the consuming task stops the tail and its consumer.
        """
        check_tail_arguments(partition, from_offset, max_batch_entries, self._partition_count)
        return self._tail(partition, from_offset, max_batch_entries)

    async def end_offset(self, partition: int) -> int:
        """The offset the next appended entry will get (0 for an empty partition): the partition's high watermark."""
        check_partition(partition, self._partition_count)
        self._raise_if_closed()
        topic_partition = TopicPartition(self._topic, partition)
        try:
            ends = await self._until_closed(self._offsets.end_offsets([topic_partition]))
        except KafkaError as error:
            self._raise_if_closed()
            raise LogError(
                f"could not read the end offset of {self._topic}[{partition}] at {bootstrap_text(self._bootstrap)}: {error!r}; retrying is safe"
            ) from error
        self._raise_if_closed()
        return int(ends[topic_partition])

    async def start_offset(self, partition: int) -> int:
        """The partition's log start offset (0 until records were deleted)."""
        check_partition(partition, self._partition_count)
        self._raise_if_closed()
        topic_partition = TopicPartition(self._topic, partition)
        try:
            starts = await self._until_closed(self._offsets.beginning_offsets([topic_partition]))
        except KafkaError as error:
            self._raise_if_closed()
            raise LogError(f"could not read the start offset of {self._topic}[{partition}]: {error!r}; retrying is safe") from error
        return int(starts[topic_partition])

    async def trim(self, partition: int, before_offset: int) -> None:
        """Delete the partition's records below `before_offset` (Kafka's DeleteRecords: the log start offset moves up).

        The topic keeps everything otherwise (`retention.ms=-1`): only snapshots trim it.
        """
        check_partition(partition, self._partition_count)
        self._raise_if_closed()
        if before_offset <= self._trimmed.get(partition, 0):
            return
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, client_id=self._settings.client_id, request_timeout_ms=self._settings.request_timeout_ms
            )
            await admin.start()
            self._admin = admin
        topic_partition = TopicPartition(self._topic, partition)
        try:
            await self._until_closed(self._admin.delete_records({topic_partition: RecordsToDelete(before_offset)}))
        except KafkaError as error:
            self._raise_if_closed()
            raise LogError(
                f"DeleteRecords below {before_offset} on {self._topic}[{partition}] failed: {error!r}; retrying is safe"
            ) from error
        self._trimmed[partition] = before_offset
        self._tails.drop_ahead(partition)
        logger.info("Kafka log: deleted the records of %s[%d] below offset %d", self._topic, partition, before_offset)

    async def close(self) -> None:
        """Wake every waiter, stop the tails, fail queued appends with LogClosedError, wait for batches in flight, stop the clients.

        Tails and `end_offset` calls waiting on Kafka (also a tail still starting)
        raise LogClosedError at once. Waits at most about twice `append_timeout_ms`
        (the batches in flight, then the producer's retries of timed-out ones)
        when the brokers are unreachable. Twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        for waiter in list(self._waits):
            waiter.cancel()
        await self._tails.close(lambda consumer: asyncio.ensure_future(stop_consumer(consumer)))
        for queue in self._queues.values():
            self._fail_all(queue, LogClosedError(f"Kafka log on topic {self._topic} closed before the append was sent"))
        await asyncio.gather(*self._writers.values(), return_exceptions=True)
        async with self._producer_renewal:
            await self._stop_producer(self._producer)
        await stop_consumer(self._offsets)
        if self._admin is not None:
            await self._admin.close()
        logger.info("closed Kafka log on topic %s", self._topic)

    async def _stop_producer(self, producer: AIOKafkaProducer) -> None:
        """Stop a producer, which first waits for batches of timed-out appends it still retries, for at most `append_timeout_ms`."""
        try:
            async with asyncio.timeout(self._settings.append_timeout_ms / 1000):
                await producer.stop()
        except TimeoutError:
            logger.error(
                "closing the Kafka log on topic %s: the producer still held unacknowledged batches after append_timeout_ms=%d; gave up on them",
                self._topic,
                self._settings.append_timeout_ms,
            )

    def _start_writer(self, partition: int) -> None:
        if partition in self._writers:
            return
        writer = asyncio.create_task(self._write_partition(partition), name=f"kafka-log-writer-{self._topic}-{partition}")
        self._writers[partition] = writer
        writer.add_done_callback(self._writer_done)

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        if not writer.cancelled() and writer.exception() is not None:
            logger.error("Kafka log writer %s failed", writer.get_name(), exc_info=writer.exception())

    async def _write_partition(self, partition: int) -> None:
        """Send the partition's queued appends, one batch in flight at a time, until the queue is empty."""
        queue = self._queues[partition]
        try:
            while queue and not self._closed:
                group = self._take_group(queue)
                try:
                    base_offset = await self._send_group_renewing(partition, group)
                except asyncio.CancelledError:
                    self._settle_failed(
                        group,
                        AppendOutcomeUnknownError(
                            f"the writer of {self._topic}[{partition}] was cancelled; the append may still be written"
                        ),
                    )
                    raise
                except Exception as error:
                    self._settle_failed(group, self._append_error(partition, error))
                else:
                    self._settle_written(partition, group, base_offset)
            self._fail_all(queue, LogClosedError(f"Kafka log on topic {self._topic} closed before the append was sent"))
        finally:
            del self._writers[partition]

    def _take_group(self, queue: deque[_PendingAppend]) -> list[_PendingAppend]:
        group = [queue.popleft()]
        group_bytes = group[0].framed_bytes
        while queue and group_bytes + queue[0].framed_bytes <= self._settings.max_group_bytes:
            group_bytes += queue[0].framed_bytes
            group.append(queue.popleft())
        return group

    async def _send_group_renewing(self, partition: int, group: list[_PendingAppend]) -> int:
        """Send a group; if the brokers lost the producer's state, renew the producer and send the group once more.

        The brokers rejected the group in that case, so sending it again cannot write it twice.
        """
        producer = self._producer
        try:
            return await self._send_group(producer, partition, group)
        except _LOST_PRODUCER_STATE as error:
            await self._renew_producer(producer, error)
        return await self._send_group(self._producer, partition, group)

    async def _renew_producer(self, failed: AIOKafkaProducer, error: Exception) -> None:
        """Replace the producer after the brokers lost its idempotence state; the first writer to see it does it, once.

        The new producer gets a new producer id, so its sequence numbers start
        afresh; the old one is stopped after the swap, so batches of other
        partitions in flight on it still settle (bounded by `append_timeout_ms`).
        """
        async with self._producer_renewal:
            if self._producer is not failed or self._closed:
                return
            logger.warning("Kafka log on topic %s: the brokers lost the producer's state (%r); starting a new producer", self._topic, error)
            try:
                self._producer = await self._until_closed(
                    start_with_retry(
                        lambda: _new_producer(self._bootstrap, self._settings),
                        AIOKafkaProducer.start,
                        AIOKafkaProducer.stop,
                        "producer",
                        self._bootstrap,
                        self._settings,
                        connect_deadline(self._settings),
                    )
                )
            except LogClosedError:
                return  # close stops the old producer
        await self._stop_producer(failed)

    async def _send_group(self, producer: AIOKafkaProducer, partition: int, group: list[_PendingAppend]) -> int:
        """Send the appends of a group as one record batch; return its base offset once acknowledged."""
        batch = producer.create_batch()
        for pending in group:
            for entry in pending.entries:
                appended = batch.append(key=None, value=entry, timestamp=None)
                assert appended is not None, "a group must fit in one batch (max_group_bytes <= max_append_bytes < max_batch_bytes)"
        async with asyncio.timeout(self._settings.append_timeout_ms / 1000):
            delivery = await producer.send_batch(batch, self._topic, partition=partition)
            metadata = await delivery
        return int(metadata.offset)

    def _settle_written(self, partition: int, group: list[_PendingAppend], base_offset: int) -> None:
        if base_offset < 0:
            # aiokafka resolves a batch the broker answered DUPLICATE_SEQUENCE_NUMBER with the response's offset, -1: the
            # broker holds the batch from an earlier try but no longer knows its offsets (see wal.kafka_tail_merge).
            self._settle_failed(
                group,
                AppendOutcomeUnknownError(
                    f"the brokers acknowledged an append to {self._topic}[{partition}] as a duplicate of a batch they hold, "
                    "without its offsets: it is written once, and a retry would write it again"
                ),
            )
            return
        last_offset = self._last_offsets.get(partition, -1)
        assert base_offset > last_offset, f"offsets of {self._topic}[{partition}] must grow: batch at {base_offset} after {last_offset}"
        next_offset = base_offset
        now = time.perf_counter()
        for pending in group:
            next_offset += len(pending.entries)
            # Measured here, not by the caller: the entries of a caller cancelled meanwhile count too.
            self._meter.observe(len(pending.entries), now - pending.started)
            if not pending.result.done():
                pending.result.set_result(next_offset - 1)
            self._budget.release(pending.framed_bytes)
        self._last_offsets[partition] = next_offset - 1
        entries = group[0].entries if len(group) == 1 else [entry for pending in group for entry in pending.entries]
        self._tails.acknowledged(partition, base_offset, entries)

    def _settle_failed(self, group: list[_PendingAppend], error: LogError) -> None:
        for pending in group:
            if not pending.result.done():
                pending.result.set_exception(error)
            self._budget.release(pending.framed_bytes)

    def _fail_all(self, queue: deque[_PendingAppend], error: LogError) -> None:
        group = list(queue)
        queue.clear()
        self._settle_failed(group, error)

    def _append_error(self, partition: int, error: Exception) -> LogError:
        if self._closed:
            return AppendOutcomeUnknownError(
                f"Kafka log on topic {self._topic} closed while the append was being sent; it may or may not have been written"
            )
        if isinstance(error, ProducerClosed):
            outcome = "failed: the producer was replaced while sending it"
        elif isinstance(error, TimeoutError):
            outcome = f"was not acknowledged within append_timeout_ms={self._settings.append_timeout_ms}"
        else:
            outcome = f"failed: {error!r}"
        return AppendOutcomeUnknownError(
            f"an append to {self._topic}[{partition}] at {bootstrap_text(self._bootstrap)} {outcome}; "
            "it may still be written, so a retry can duplicate it"
        )

    async def _tail(self, partition: int, from_offset: int, max_batch_entries: int) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        self._raise_if_closed()
        log_start = await self.start_offset(partition)
        if from_offset < log_start:
            raise LogTrimmedError(
                f"{self._topic}[{partition}] holds offsets from {log_start} on, offset {from_offset} was deleted below a "
                "durable snapshot; restore that snapshot"
            )
        next_offset = min(from_offset, await self.end_offset(partition))  # from beyond the end: read from the end, skip up to it
        feed = await self._until_closed(self._tails.open(partition, next_offset, max_batch_entries))
        try:
            while True:
                item = await feed.batches.get()  # close() puts LogClosedError into every feed
                self._tails.took(feed)
                if isinstance(item, LogError):
                    raise item
                batch = item if item[0][0] >= from_offset else [entry for entry in item if entry[0] >= from_offset]
                if batch:
                    yield batch
        finally:
            self._tails.close_feed(feed)

    async def _start_tail_consumer(self) -> AIOKafkaConsumer:
        return await self._until_closed(
            start_with_retry(
                lambda: _new_consumer(self._bootstrap, self._settings, "tail"),
                AIOKafkaConsumer.start,
                stop_consumer,
                "tail consumer",
                self._bootstrap,
                self._settings,
                connect_deadline(self._settings),
            )
        )

    async def _until_closed(self, awaitable: Awaitable[Result]) -> Result:
        """Await `awaitable` as a task that `close` cancels: its result, or LogClosedError once the log closes.

        Cancelling the caller cancels the task too and raises CancelledError as usual.
        """
        self._raise_if_closed()
        waiter = asyncio.ensure_future(awaitable)
        self._waits.add(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and waiter.cancelled() and (current is None or current.cancelling() == 0):
                raise LogClosedError(f"Kafka log on topic {self._topic} closed while waiting on Kafka") from None
            raise
        finally:
            self._waits.discard(waiter)

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise LogClosedError(f"Kafka log on topic {self._topic} is closed")


async def _wait_until_partitions_serve(offsets: AIOKafkaConsumer, topic: str, partition_count: int, settings: KafkaLogSettings) -> None:
    """Ask every partition's leader for its end offset, so that a new topic's first appends find leaders ready."""
    try:
        async with asyncio.timeout(settings.request_timeout_ms / 1000):
            await offsets.end_offsets([TopicPartition(topic, partition) for partition in range(partition_count)])
    except (KafkaError, TimeoutError) as error:
        raise LogError(
            f"the partitions of topic {topic!r} have no serving leader after {settings.request_timeout_ms} ms ({error!r}); retry when the cluster is healthy"
        ) from error


def _new_producer(bootstrap: str | list[str], settings: KafkaLogSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.client_id}-log-producer",
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        compression_type=settings.compression_type,
        max_batch_size=settings.max_batch_bytes,
        max_request_size=settings.max_batch_bytes,
        # aiokafka also drops a batch that waited this long for a partition leader (its batch ttl), failing the
        # append with LeaderNotAvailableError: a broker outage longer than request_timeout_ms but shorter than
        # append_timeout_ms must be waited out, as the append's contract says, so the producer gets the longer one.
        request_timeout_ms=max(settings.request_timeout_ms, settings.append_timeout_ms),
    )


def _new_consumer(bootstrap: str | list[str], settings: KafkaLogSettings, role: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.client_id}-log-{role}",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        isolation_level="read_uncommitted",
        fetch_max_wait_ms=settings.max_fetch_wait_ms,
        max_partition_fetch_bytes=settings.max_fetch_bytes,
        fetch_max_bytes=settings.max_fetch_bytes,
        request_timeout_ms=settings.request_timeout_ms,
    )
