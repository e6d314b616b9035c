"""What several nodes share on Kafka: who is in the cluster, how to reach them, and replies to requests waiting at another node.

Every node writes `node/<id>` (its admin URL) into the metadata topic at start.
A partition leader answering a request that waits at another node posts the
reply to that node's `/internal/replies`; the posting is bounded and never
blocks applying. A lost reply loses nothing durable: the caller can attach.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from duro.worker_link import LinkClient
from wal.kafka_metadata import KafkaMetadata
from wal.log import LogError
from wal.records import IngressSink
from wal.replies import Reply, ReplyBus, encode_reply

log = logging.getLogger("duro.cluster")


def node_key(node_id: int) -> str:
    return f"node/{node_id}"


async def announce_node(metadata: KafkaMetadata, node_id: int, admin_url: str, ingress_url: str) -> None:
    await metadata.put(node_key(node_id), json.dumps({"admin_url": admin_url, "ingress_url": ingress_url}).encode())


class ReplyRouter:
    """Delivers a reply to the node its sink names: locally through the bus, else over HTTP.

    In a node of several workers, a reply for a request waiting at another
    worker of this node goes over that worker's link (`siblings`).
    """

    def __init__(
        self,
        bus: ReplyBus,
        metadata: KafkaMetadata | None,
        max_in_flight: int = 1_000,
        timeout_ms: int = 5_000,
        peer_headers: dict[str, str] | None = None,
        siblings: dict[int, LinkClient] | None = None,
    ) -> None:
        """`peer_headers` go with every post to another node (its admin token, when the cluster has one)."""
        self._bus = bus
        self._siblings = siblings or {}
        self._peer_headers = peer_headers or {}
        self._metadata = metadata
        self._slots = asyncio.Semaphore(max_in_flight)
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_in_flight = max_in_flight

    def deliver(self, sink: IngressSink, reply: Reply) -> None:
        if sink.node_id == self._bus.node_id or self._metadata is None:
            worker = self._bus.worker_of(sink)
            if worker != self._bus.worker and worker in self._siblings:
                self._to_sibling(self._siblings[worker], encode_reply(sink, reply))
                return
            self._bus.deliver(sink, reply)
            return
        self._in_background(lambda: self._post(sink, reply), f"node {sink.node_id}")

    def _to_sibling(self, link: LinkClient, encoded: bytes) -> None:
        """A reply for another worker of this node: written at once on its link, or after connecting (bounded like posts)."""
        if not link.reply_nowait(encoded):
            self._in_background(lambda: self._reply_over(link, encoded), f"worker {link.worker}")

    def _in_background(self, delivery: Callable[[], Coroutine[Any, Any, None]], to: str) -> None:
        """Run a delivery as a task, at most `max_in_flight` at once (beyond that the reply is dropped: its waiter re-asks)."""
        if len(self._tasks) >= self.max_in_flight:
            log.warning("dropping a reply for %s: %d replies in flight (max_in_flight)", to, len(self._tasks))
            return
        task = asyncio.create_task(delivery())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _reply_over(link: LinkClient, encoded: bytes) -> None:
        try:
            await link.reply(encoded)
        except LogError as error:  # lost: the waiting request re-asks its partition (reply_nudge_interval_ms)
            log.info("reply to worker %d not sent: %s", link.worker, error)

    async def _post(self, sink: IngressSink, reply: Reply) -> None:
        assert self._metadata is not None, "remote replies need the cluster metadata"
        raw = self._metadata.values.get(node_key(sink.node_id))
        if raw is None:
            log.info("reply for unknown node %d dropped", sink.node_id)
            return
        url = json.loads(raw)["admin_url"].rstrip("/") + "/internal/replies"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._slots, self._session.post(url, data=encode_reply(sink, reply), headers=self._peer_headers) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("reply to node %d at %s failed: %r", sink.node_id, url, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
