"""Partition ownership on Kafka: a consumer group assigns the log topic's partitions to the duro nodes.

Each node joins the group `duro.workers.<topic>` subscribed to the log topic,
only to be told which partitions it owns; it pauses them and never consumes
through the group (each processor tails its partition with its own reader). A
node that stops heartbeating (crash, SIGSTOP) loses its partitions after
`session_timeout_ms`; the group gives them to the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("duro.membership")

OnAssignment = Callable[[set[int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MembershipSettings:
    session_timeout_ms: int = 6_000
    """A node silent this long loses its partitions (the broker's group.min.session.timeout.ms bounds it from below)."""
    heartbeat_interval_ms: int = 1_000
    """How often a node tells the group it is alive (well below the session timeout)."""
    max_poll_interval_ms: int = 60_000
    """The group drops a member that has not polled for this long; the membership loop polls every second."""
    rebalance_timeout_ms: int = 10_000
    """How long the group waits for members to rejoin during a rebalance."""


class _Listener(ConsumerRebalanceListener):
    def __init__(self, membership: KafkaMembership) -> None:
        self._membership = membership

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Keep running until the new assignment is known: partitions that stay here are not restarted.

        A partition that moves may briefly run on both nodes; leader epochs make
        that safe (the new owner's announcement fences the old one off).
        """

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._membership._changed({tp.partition for tp in assigned})


class KafkaMembership:
    """Tells this node which log partitions it owns, and calls `on_assignment` whenever that changes.

    On a rebalance the node keeps its partitions until its new assignment
    arrives, then stops those it lost and starts those it gained.
    """

    def __init__(
        self, bootstrap: str, topic: str, node_id: int, on_assignment: OnAssignment, settings: MembershipSettings | None = None
    ) -> None:
        self.topic = topic
        self.node_id = node_id
        self.settings = settings or MembershipSettings()
        self._on_assignment = on_assignment
        self.owned: set[int] = set()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=f"duro-node-{node_id}",
            group_id=f"duro.workers.{topic}",
            enable_auto_commit=False,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
            rebalance_timeout_ms=self.settings.rebalance_timeout_ms,
        )

    async def _changed(self, partitions: set[int]) -> None:
        if partitions == self.owned:
            return
        log.info("node %d: partitions %s -> %s", self.node_id, sorted(self.owned), sorted(partitions))
        self.owned = partitions
        await self._on_assignment(set(partitions))

    async def run(self) -> None:
        """Stay in the group until cancelled; then leave it (the partitions move at once)."""
        await self._consumer.start()
        try:
            self._consumer.subscribe([self.topic], listener=_Listener(self))
            while True:
                assignment = self._consumer.assignment()
                if assignment:
                    self._consumer.pause(*assignment)
                await self._consumer.getmany(timeout_ms=1_000)
        finally:
            await asyncio.shield(self._consumer.stop())
