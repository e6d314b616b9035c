"""Reaching Kafka and its topic for `KafkaLog`: start and stop aiokafka clients (bounded, logged retries), create or check duro's topic.

A topic the log creates gets the requested partition count, replication factor,
`min.insync.replicas`, unlimited retention and room for the largest append. An
existing topic is used as it is if its partition count matches; otherwise
opening fails with a `LogError` that names both counts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from wal.kafka_settings import KafkaLogSettings
from wal.log import LogError

logger = logging.getLogger(__name__)

MAX_TOPIC_NAME_CHARS = 249
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")
_FIRST_BACKOFF_S = 0.1
_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36
_NO_LEADER = -1

Client = TypeVar("Client")


def check_topic_name(topic: str) -> None:
    if not isinstance(topic, str) or not _TOPIC_NAME.fullmatch(topic) or len(topic) > MAX_TOPIC_NAME_CHARS or topic in (".", ".."):
        raise ValueError(f"topic must be 1..{MAX_TOPIC_NAME_CHARS} of the characters A-Z a-z 0-9 . _ - (not '.' or '..'), got {topic!r}")


def bootstrap_text(bootstrap: str | list[str]) -> str:
    return bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)


def connect_deadline(settings: KafkaLogSettings) -> float:
    """The `time.monotonic()` by which connecting must have succeeded: now plus `connect_timeout_ms`."""
    return time.monotonic() + settings.connect_timeout_ms / 1000


async def start_with_retry(
    make: Callable[[], Client],
    start: Callable[[Client], Awaitable[None]],
    stop: Callable[[Client], Awaitable[None]],
    what: str,
    bootstrap: str | list[str],
    settings: KafkaLogSettings,
    deadline: float,
) -> Client:
    """Make and start an aiokafka client, retrying with doubling pauses until `deadline` (monotonic); then LogError.

    Every failed attempt is logged with the bootstrap address. Cancelling stops
    the client being started.
    """
    backoff_s = _FIRST_BACKOFF_S
    for attempt in itertools.count(1):
        client = make()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                await start(client)
            return client
        except (KafkaError, OSError, TimeoutError) as error:
            await stop(client)
            remaining_s = deadline - time.monotonic()
            reason = str(error) or type(error).__name__
            if remaining_s <= 0:
                raise LogError(
                    f"could not reach Kafka at {bootstrap_text(bootstrap)} for the {what} within "
                    f"{settings.connect_timeout_ms} ms ({attempt} attempts; last error: {reason}); "
                    "check that a broker runs there and the address is right, then retry (nothing was written)"
                ) from error
            pause_s = min(backoff_s, remaining_s)
            logger.warning(
                "Kafka at %s is not reachable for the %s (attempt %d: %s); retrying in %.1f s",
                bootstrap_text(bootstrap),
                what,
                attempt,
                reason,
                pause_s,
            )
            await asyncio.sleep(pause_s)
            backoff_s = min(backoff_s * 2, settings.max_connect_backoff_ms / 1000)
        except BaseException:
            await stop(client)
            raise
    raise AssertionError("itertools.count never ends; the deadline ends the retries")


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop an aiokafka consumer in any state: just started, or with fetches failing on a broker that is gone.

    Two flaws of aiokafka 0.14's `stop` make it raise CancelledError half-way
    although nobody cancelled the caller, leaving its connections open:
    - `start` ends by creating a coordinator task that `stop` cancels and awaits;
      cancelled before its first step, that task skips its own handler
      (aio-libs/aiokafka#647). One turn of the event loop first lets every task
      created so far take its first step (the ready queue is FIFO): an event-loop
      turn, not a wait for time;
    - the fetcher cancels and awaits its own fetch requests, and one that sits in
      a retry back-off (the broker is down) ends cancelled. Then the consumer's
      client, which `stop` did not reach, is closed here.
    A cancellation of the caller itself propagates as usual.
    """
    await asyncio.sleep(0)
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        logger.debug("aiokafka's consumer stop ended half-way on a cancelled fetch of its own; closing its connections")
        await consumer._client.close()  # the rest of `stop`; aiokafka offers no public way after a half-done stop


async def ensure_topic(bootstrap: str | list[str], topic: str, partition_count: int, settings: KafkaLogSettings, deadline: float) -> None:
    """Create `topic` with `partition_count` partitions unless it exists; fail if it exists with another count.

    Returns once every partition has a leader, so that the first append and
    tail find them.
    """
    admin = await start_with_retry(
        lambda: AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, client_id=settings.client_id, request_timeout_ms=settings.request_timeout_ms
        ),
        AIOKafkaAdminClient.start,
        AIOKafkaAdminClient.close,
        "admin client",
        bootstrap,
        settings,
        deadline,
    )
    try:
        await _create_unless_present(admin, topic, partition_count, settings)
        await _wait_for_leaders(admin, topic, partition_count, settings)
    except KafkaError as error:
        raise LogError(
            f"could not create or describe topic {topic!r} at {bootstrap_text(bootstrap)}: {error!r}; opening again is safe"
        ) from error
    finally:
        await admin.close()


def topic_configs(settings: KafkaLogSettings) -> dict[str, str]:
    """The configuration of a topic the log creates: keep everything, acknowledge only in-sync writes."""
    return {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": str(settings.min_insync_replicas),
        "unclean.leader.election.enable": "false",
        "max.message.bytes": str(settings.max_batch_bytes),
        "segment.ms": str(settings.segment_ms),
    }


async def _create_unless_present(admin: AIOKafkaAdminClient, topic: str, partition_count: int, settings: KafkaLogSettings) -> None:
    new_topic = NewTopic(topic, partition_count, settings.replication_factor, topic_configs=topic_configs(settings))
    response = await admin.create_topics([new_topic], timeout_ms=settings.request_timeout_ms)
    for name, error_code, *message in response.topic_errors:
        if name != topic or error_code in (_NO_ERROR, _TOPIC_ALREADY_EXISTS):
            continue
        detail = message[0] if message and message[0] else f"error code {error_code}"
        raise LogError(
            f"could not create topic {topic!r} with {partition_count} partitions and replication factor "
            f"{settings.replication_factor}: {detail}"
        )
    if response.topic_errors and response.topic_errors[0][1] == _NO_ERROR:
        logger.info("created topic %s with %d partitions, replication factor %d", topic, partition_count, settings.replication_factor)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partition_count: int, settings: KafkaLogSettings) -> None:
    deadline = time.monotonic() + settings.request_timeout_ms / 1000
    while True:
        description = await _describe(admin, topic)
        partitions = description.get("partitions", []) if description else []
        if partitions and len(partitions) != partition_count:
            raise LogError(
                f"topic {topic!r} has {len(partitions)} partitions but the log was opened with partition_count={partition_count}; "
                "open it with the topic's count or use another topic (a topic's partitions must never change under duro)"
            )
        if partitions and all(partition["leader"] != _NO_LEADER for partition in partitions):
            return
        if time.monotonic() >= deadline:
            raise LogError(
                f"topic {topic!r} has no leader for every partition after {settings.request_timeout_ms} ms; retry when the cluster is healthy"
            )
        await asyncio.sleep(_FIRST_BACKOFF_S)


async def _describe(admin: AIOKafkaAdminClient, topic: str) -> dict[str, Any] | None:
    """The topic's metadata, or None while the brokers do not know it yet."""
    for description in await admin.describe_topics([topic]):
        if description["topic"] == topic and description["error_code"] == _NO_ERROR:
            return description
    return None
