"""What the admin API asks a subscription's Kafka cluster: does a topic exist, and how far behind is a consumer group.

Each question opens short-lived clients with the cluster's properties, is
bounded by `timeout_ms`, and closes them again. A cluster that cannot be asked
raises `KafkaUnavailable` naming its brokers and what failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ingress import kafka_options
from ingress.registry import RegistryError
from ingress.subscriptions import KafkaCluster, KafkaUnavailable

log = logging.getLogger(__name__)

_LISTED_TOPICS = 20
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One topic partition of a consumer group: its committed position (None: nothing committed yet), end offset and lag."""

    partition: int
    committed_offset: int | None
    end_offset: int
    lag: int


class KafkaInspector:
    """Answers questions about Kafka clusters for the admin API, each within `timeout_ms`."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms

    async def check_topic(self, cluster: KafkaCluster, topic: str) -> None:
        """Return if `topic` exists on `cluster`; RegistryError (400) naming it if not, KafkaUnavailable if the cluster cannot be asked."""
        topics = await self._bounded(cluster.properties, f"list the topics to check '{topic}'", self._topics(cluster.properties))
        if topic not in topics:
            shown = sorted(t for t in topics if not t.startswith("__"))[:_LISTED_TOPICS]
            raise RegistryError(
                f"Kafka topic '{topic}' does not exist in Kafka cluster '{cluster.name}' ({cluster.bootstrap}); create it first."
                f" Topics there: {shown}"
            )

    async def lag(self, properties: Mapping[str, str], group_id: str, topic: str) -> list[PartitionLag]:
        """Per partition of `topic`: the group's committed offset, the end offset, and the records between them."""
        return await self._bounded(properties, f"read the lag of group '{group_id}'", self._lag(properties, group_id, topic))

    async def _topics(self, properties: Mapping[str, str]) -> set[str]:
        admin = AIOKafkaAdminClient(**kafka_options.connection_kwargs(properties), request_timeout_ms=self.timeout_ms)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    async def _lag(self, properties: Mapping[str, str], group_id: str, topic: str) -> list[PartitionLag]:
        admin = AIOKafkaAdminClient(**kafka_options.connection_kwargs(properties), request_timeout_ms=self.timeout_ms)
        offsets = AIOKafkaConsumer(**kafka_options.connection_kwargs(properties), request_timeout_ms=self.timeout_ms)
        await admin.start()
        try:
            await offsets.start()
            committed = await admin.list_consumer_group_offsets(group_id)
            described = await admin.describe_topics([topic])
            numbers = sorted(p["partition"] for d in described if d["topic"] == topic for p in d["partitions"])
            partitions = [TopicPartition(topic, number) for number in numbers]
            ends = await offsets.end_offsets(partitions) if partitions else {}
        finally:
            await asyncio.gather(admin.close(), offsets.stop(), return_exceptions=True)
        rows = []
        for tp in partitions:
            position = committed.get(tp)
            offset = position.offset if position is not None and position.offset >= 0 else None
            end = ends[tp]
            rows.append(PartitionLag(tp.partition, offset, end, max(0, end - (offset or 0))))
        return rows

    async def _bounded(self, properties: Mapping[str, str], what: str, work: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await asyncio.wait_for(work, self.timeout_ms / 1000)
        except RegistryError:
            raise
        except (KafkaError, OSError, TimeoutError) as error:
            bootstrap = kafka_options.bootstrap_of(properties)
            reason = "no answer" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
            raise KafkaUnavailable(f"could not {what} on Kafka at {bootstrap} within {self.timeout_ms} ms: {reason}") from None
        except Exception:
            bootstrap = kafka_options.bootstrap_of(properties)
            log.exception("could not %s on Kafka at %s", what, bootstrap)
            raise KafkaUnavailable(
                f"could not {what} on Kafka at {bootstrap}: an unexpected error; the node's log has the traceback"
            ) from None
