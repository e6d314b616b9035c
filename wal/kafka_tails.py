"""One consumer per Kafka log that reads every tailed partition and hands each tail its records, with the node's own appends at their acknowledgement.

Before, every tail had an aiokafka consumer of its own: 24 partitions meant 24
consumers, 24 connections and 24 long-polling fetch loops, each paying a whole
fetch round for the records of one partition. `SharedTails` assigns all tailed
partitions to one consumer; one fetch brings the new records of every partition
at once and a dispatcher task puts each partition's records into its tail's
queue (split into batches of at most the tail's `max_batch_entries`).

Each tail's queue holds at most `MAX_QUEUED_BATCHES` batches; when it is full
the partition is paused (no more fetches for it) until its tails catch up, so
a slow processor holds back only its own partition. Adding or removing a tail
reassigns the consumer and seeks every tailed partition to the lowest next
offset of its tails (several tails of one partition each skip what they have
seen), so nothing is skipped or delivered twice. A fetch that fails fails
every tail (as a tail's own consumer did); closing wakes every tail with
LogClosedError.

The log also hands each acknowledged append of this node to the tails of its
partition (`acknowledged`), which take it at once instead of a fetch round trip
later; `wal.kafka_tail_merge` keeps each tail's entries in log order across the
two paths. A tail whose queue is full takes no acknowledged entries (the
fetcher brings them once it is resumed), so the queue bound holds for both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from wal.kafka_tail_merge import OffsetJumpError, TailMerge
from wal.log import LogClosedError, LogError
from wal.metrics import TAIL_SOURCE_ACKNOWLEDGED, TAIL_SOURCE_FETCHED, tail_entries

logger = logging.getLogger(__name__)

MAX_QUEUED_BATCHES = 4
"""Batches fetched for one tail and not yet taken; beyond it the partition's fetching pauses."""

Batch = list[tuple[int, bytes]]


@dataclass(eq=False)
class TailFeed:
    """What one tail reads: its records in order from `next_offset` on, or the error that ended them."""

    partition: int
    merge: TailMerge  # the offset of the next record this tail is to receive, and this node's records held ahead of it
    max_batch_entries: int
    batches: asyncio.Queue[Batch | LogError] = field(default_factory=lambda: asyncio.Queue())
    paused: bool = False


class SharedTails:
    """The tails of one Kafka log, served by one consumer (made and started by `start_consumer`, at the first tail)."""

    def __init__(
        self, topic: str, max_fetch_wait_ms: int, max_ahead_bytes: int, start_consumer: Callable[[], asyncio.Future[AIOKafkaConsumer]]
    ) -> None:
        self._topic = topic
        self._max_ahead_bytes = max_ahead_bytes
        self._max_fetch_wait_ms = max_fetch_wait_ms
        self._start_consumer = start_consumer
        self._consumer: AIOKafkaConsumer | None = None
        self._starting: asyncio.Future[AIOKafkaConsumer] | None = None
        self._feeds: dict[int, list[TailFeed]] = {}  # partition -> its tails
        self._dispatcher: asyncio.Task[None] | None = None
        self._assignment_changed = asyncio.Event()
        self._closed = False
        self._fetched_counter = tail_entries.labels(TAIL_SOURCE_FETCHED)
        self._acknowledged_counter = tail_entries.labels(TAIL_SOURCE_ACKNOWLEDGED)

    async def open(self, partition: int, next_offset: int, max_batch_entries: int) -> TailFeed:
        """Start feeding a new tail of `partition` from `next_offset`."""
        if self._closed:
            raise LogClosedError(f"Kafka log on topic {self._topic} is closed")
        consumer = await self._consumer_started()
        feed = TailFeed(partition, TailMerge(next_offset, self._max_ahead_bytes), max_batch_entries)
        self._feeds.setdefault(partition, []).append(feed)
        self._reassign(consumer)
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(consumer), name=f"kafka-log-tails-{self._topic}")
        return feed

    def close_feed(self, feed: TailFeed) -> None:
        """The tail stopped: stop fetching its partition unless another tail reads it."""
        feeds = self._feeds.get(feed.partition, [])
        if feed in feeds:
            feeds.remove(feed)
            if not feeds:
                del self._feeds[feed.partition]
            if self._consumer is not None and not self._closed:
                self._reassign(self._consumer)

    def acknowledged(self, partition: int, base_offset: int, entries: list[bytes]) -> None:
        """This node's `entries`, acknowledged by the broker at `base_offset` on: the partition's tails take what follows their position.

        A tail whose queue is full skips them: the fetcher brings them (at once,
        or after the tail took its batches if its partition is paused).
        """
        for feed in self._feeds.get(partition, ()):
            if feed.batches.qsize() >= MAX_QUEUED_BATCHES:
                continue
            taken = feed.merge.acknowledged(base_offset, entries)
            if taken:
                self._acknowledged_counter.inc(len(taken))
                self._put(feed, taken)

    def drop_ahead(self, partition: int) -> None:
        """Forget this node's entries the partition's tails hold ahead of a gap (after a trim); the fetcher brings them."""
        for feed in self._feeds.get(partition, ()):
            feed.merge.drop_ahead()

    def took(self, feed: TailFeed) -> None:
        """The tail took a batch: fetch its partition again once none of its tails has a full queue."""
        if not feed.paused or self._consumer is None or self._closed:
            return
        feeds = self._feeds.get(feed.partition, [])
        if all(other.batches.qsize() < MAX_QUEUED_BATCHES for other in feeds):
            for other in feeds:
                other.paused = False
            self._consumer.resume(TopicPartition(self._topic, feed.partition))

    async def close(self, stop: Callable[[AIOKafkaConsumer], asyncio.Future[None]]) -> None:
        """Stop the dispatcher and the consumer; every tail raises LogClosedError."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        self._fail_all(LogClosedError(f"Kafka log on topic {self._topic} closed"))
        if self._consumer is not None:
            await stop(self._consumer)

    async def _consumer_started(self) -> AIOKafkaConsumer:
        if self._consumer is not None:
            return self._consumer
        if self._starting is None:
            self._starting = self._start_consumer()
        starting = self._starting
        try:
            consumer = await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting:
                self._starting = None  # a failed start is tried again by the next tail
            raise
        self._consumer = consumer
        return consumer

    def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        """Assign the tailed partitions and seek each to the next offset its tail wants (a reassignment forgets positions)."""
        consumer.assign([TopicPartition(self._topic, partition) for partition in sorted(self._feeds)])
        for partition, feeds in self._feeds.items():
            topic_partition = TopicPartition(self._topic, partition)
            for feed in feeds:
                feed.merge.drop_ahead()  # positions are forgotten: what was held ahead is fetched again
            consumer.seek(topic_partition, min(feed.merge.next_offset for feed in feeds))
            if any(feed.paused for feed in feeds):
                consumer.pause(topic_partition)
        self._assignment_changed.set()

    async def _dispatch(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while not self._closed:
                if not self._feeds:
                    self._assignment_changed.clear()
                    await self._assignment_changed.wait()
                    continue
                fetched = await consumer.getmany(timeout_ms=self._max_fetch_wait_ms)
                for topic_partition, records in fetched.items():
                    entries = [(record.offset, record.value if record.value is not None else b"") for record in records]
                    for feed in list(self._feeds.get(topic_partition.partition, ())):
                        self._deliver(consumer, feed, entries)
        except KafkaError as error:
            self._fail_all(LogError(f"the tails of topic {self._topic} failed: {error!r}; a new tail from the last offset seen is safe"))
        except Exception as error:  # noticed by every tail, never silent
            logger.exception("the tail dispatcher of topic %s failed", self._topic)
            self._fail_all(LogError(f"the tail dispatcher of topic {self._topic} failed: {error!r}"))

    def _deliver(self, consumer: AIOKafkaConsumer, feed: TailFeed, records: list[tuple[int, bytes]]) -> None:
        try:
            taken = feed.merge.fetched(records)
        except OffsetJumpError as jump:
            feed.batches.put_nowait(
                LogError(
                    f"offsets of {self._topic}[{feed.partition}] jump from {jump.expected_offset} to {jump.fetched_offset}: the topic"
                    " must hold only duro's entries (no transactions, no compaction, no truncation)"
                )
            )
            self.close_feed(feed)
            return
        if taken:
            self._fetched_counter.inc(len(taken))
            self._put(feed, taken)
        if feed.batches.qsize() >= MAX_QUEUED_BATCHES and not feed.paused:
            feed.paused = True
            consumer.pause(TopicPartition(self._topic, feed.partition))

    @staticmethod
    def _put(feed: TailFeed, taken: Batch) -> None:
        """Queue `taken` for the tail in batches of at most its `max_batch_entries`."""
        size = feed.max_batch_entries
        if len(taken) <= size:
            feed.batches.put_nowait(taken)
            return
        for start in range(0, len(taken), size):
            feed.batches.put_nowait(taken[start : start + size])

    def _fail_all(self, error: LogError) -> None:
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.batches.put_nowait(error)
        self._feeds.clear()
