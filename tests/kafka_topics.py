"""Kafka topics, producing and consumer groups for subscription tests, through aiokafka (each call runs its own event loop, so tests stay synchronous)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TIMEOUT_S = 60.0


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(asyncio.wait_for(create(), TIMEOUT_S))


def produce(
    bootstrap: str, topic: str, events: Iterable[tuple[str | bytes | None, Any]], headers: list[tuple[str, bytes]] | None = None
) -> None:
    """Write (key, value) events in order, acks=all; a dict or list value is sent as JSON, bytes as they are. Keys pick partitions as Kafka's default partitioner does."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            sent = []
            for key, value in events:
                raw_key = key.encode() if isinstance(key, str) else key
                raw_value = value if isinstance(value, bytes) else json.dumps(value).encode()
                sent.append(await producer.send(topic, raw_value, key=raw_key, headers=headers))
            await producer.flush()
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(send(), TIMEOUT_S))


def group_members(bootstrap: str, group_id: str) -> int:
    """How many consumers are members of `group_id` now."""

    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group_id])
            (group,) = response.groups  # (error_code, group, state, protocol_type, protocol, members)
            return len(group[5])
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(describe(), TIMEOUT_S))


def committed_offsets(bootstrap: str, group_id: str) -> dict[int, int]:
    """The positions `group_id` has committed, per partition."""

    async def read() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group_id)
            return {tp.partition: position.offset for tp, position in offsets.items() if position.offset >= 0}
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(read(), TIMEOUT_S))
