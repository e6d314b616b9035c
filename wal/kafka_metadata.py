"""Cluster metadata on Kafka: a compacted one-partition topic of keyed documents every node reads.

Keys are strings (`registry`, `node/3`); values are bytes (None deletes). Each
node tails the topic from the start, keeps the latest value per key and calls
its watchers on every change, so a deployment registered on one node is known
to all of them. `put` returns once the broker has the value and this node has
read it back, so a reader on this node sees its own writes.

Every wait is bounded: `open` by `open_timeout_ms`, `put` by `put_timeout_ms`.
If the reader task dies, waiting and later `put`s fail at once with LogError,
and `on_reader_death` lets the node notice (it stops: the registry it serves
would otherwise go stale silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from wal.kafka_topic import stop_consumer
from wal.log import LogError

log = logging.getLogger("duro.metadata")

DEFAULT_METADATA_TOPIC = "duro.metadata"
Watcher = Callable[[str, bytes | None], None]


class KafkaMetadata:
    def __init__(
        self, bootstrap: str, topic: str, replication_factor: int = 1, put_timeout_ms: int = 30_000, open_timeout_ms: int = 30_000
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.replication_factor = replication_factor
        self.put_timeout_ms = put_timeout_ms
        self.open_timeout_ms = open_timeout_ms
        self._reader_error: BaseException | None = None
        self.values: dict[str, bytes] = {}
        self._watchers: list[Watcher] = []
        self._read_offset = 0
        self._offset_reached = asyncio.Condition()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)

    def on_reader_death(self, callback: Callable[[asyncio.Task[None]], None]) -> None:
        """Call `callback` with the reader task when it ends (its death is an error unless `close` cancelled it)."""
        assert self._reader is not None, "open() starts the reader"
        self._reader.add_done_callback(callback)

    async def open(self) -> None:
        """Create the topic if needed, read it to its end, then keep following it; raises LogError after `open_timeout_ms`."""
        try:
            async with asyncio.timeout(self.open_timeout_ms / 1000):
                await self._open()
        except TimeoutError:
            await self.close()
            raise LogError(
                f"metadata topic {self.topic!r} at {self.bootstrap} was not readable within open_timeout_ms={self.open_timeout_ms}"
            ) from None
        except KafkaError as exc:
            await self.close()
            raise LogError(f"metadata topic {self.topic!r} at {self.bootstrap} could not be opened: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def _open(self) -> None:
        await self._ensure_topic()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, client_id="duro-metadata")
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, client_id="duro-metadata-reader"
        )
        await self._consumer.start()
        partition = TopicPartition(self.topic, 0)
        self._consumer.assign([partition])
        await self._consumer.seek_to_beginning(partition)
        end = (await self._consumer.end_offsets([partition]))[partition]
        self._reader = asyncio.create_task(self._read(), name="metadata reader")
        await self._wait_for_offset(end)

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="duro-metadata-admin")
        try:
            await admin.start()
            config = {"cleanup.policy": "compact", "min.insync.replicas": "1"}
            await admin.create_topics(
                [NewTopic(self.topic, num_partitions=1, replication_factor=self.replication_factor, topic_configs=config)]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _read(self) -> None:
        try:
            await self._follow()
        except BaseException as exc:
            self._reader_error = exc
            async with self._offset_reached:
                self._offset_reached.notify_all()
            raise

    async def _follow(self) -> None:
        assert self._consumer is not None, "open() starts the consumer before the reader"
        while True:
            batches = await self._consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for record in records:
                    key = record.key.decode()
                    if record.value is None:
                        self.values.pop(key, None)
                    else:
                        self.values[key] = record.value
                    self._read_offset = record.offset + 1
                    for watcher in list(self._watchers):
                        try:
                            watcher(key, record.value)
                        except Exception:
                            log.exception("metadata watcher failed on %s", key)
            async with self._offset_reached:
                self._offset_reached.notify_all()

    async def _wait_for_offset(self, offset: int) -> None:
        async with self._offset_reached:
            try:
                await asyncio.wait_for(
                    self._offset_reached.wait_for(lambda: self._read_offset >= offset or self._reader_error is not None),
                    self.put_timeout_ms / 1000,
                )
            except TimeoutError:
                raise LogError(
                    f"metadata topic {self.topic!r} was not read up to offset {offset} within put_timeout_ms={self.put_timeout_ms}"
                ) from None
        self._raise_if_reader_died()

    def _raise_if_reader_died(self) -> None:
        if self._reader_error is not None:
            raise LogError(f"the reader of metadata topic {self.topic!r} died: {self._reader_error!r}")

    async def put(self, key: str, value: bytes | None) -> None:
        """Write `key` (None deletes) and wait until this node has read it back."""
        assert self._producer is not None, "open() before put()"
        self._raise_if_reader_died()
        try:
            metadata = await asyncio.wait_for(
                self._producer.send_and_wait(self.topic, value, key=key.encode(), partition=0), self.put_timeout_ms / 1000
            )
        except Exception as exc:
            raise LogError(f"could not write {key!r} to metadata topic {self.topic!r}: {exc!r}") from exc
        await self._wait_for_offset(metadata.offset + 1)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await stop_consumer(self._consumer)
