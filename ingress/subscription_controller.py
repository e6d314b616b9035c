"""Runs one consumer per subscription on this node, following the subscription registry, and restarts a consumer that fails.

Every node runs a consumer for every subscription; the subscription's consumer
group decides which node reads which topic partition. A subscription that is
deleted (on any node: the registry is shared) stops here; one whose cluster
properties change restarts with the new ones. A consumer that fails (the
cluster unreachable, the handler unregistered, an append refused) is logged,
counted and restarted after a pause that doubles from
`restart_initial_backoff_ms` to `restart_max_backoff_ms`, as Restate's
subscription controller does; its uncommitted records are delivered again and
deduplicated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ingress import metrics
from ingress.settings import SubscriptionSettings
from ingress.subscriptions import KafkaCluster, Subscription, SubscriptionRegistry

log = logging.getLogger("duro.subscriptions")


class Consumer(Protocol):
    async def run(self) -> None: ...


ConsumerFactory = Callable[[Subscription, KafkaCluster], Consumer]


@dataclass(slots=True)
class _Running:
    subscription: Subscription
    cluster: KafkaCluster
    task: asyncio.Task[None]


class SubscriptionController:
    """Keeps this node's consumers in step with the registry; `start` once, `close` on shutdown."""

    def __init__(self, registry: SubscriptionRegistry, make_consumer: ConsumerFactory, settings: SubscriptionSettings) -> None:
        self._registry = registry
        self._make_consumer = make_consumer
        self._settings = settings
        self._running: dict[str, _Running] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> set[str]:
        return set(self._running)

    def start(self) -> None:
        self._registry.watch(self.sync)
        self.sync()

    def sync(self) -> None:
        """Start consumers of new subscriptions, stop those of deleted ones, restart those whose cluster changed."""
        if self._closed:
            return
        wanted: dict[str, tuple[Subscription, KafkaCluster]] = {}
        for subscription in self._registry.subscriptions():
            cluster = self._registry.cluster(subscription.cluster)
            if cluster is None:
                log.error(
                    "subscription %s names Kafka cluster '%s', which is not defined: not consuming", subscription.id, subscription.cluster
                )
                continue
            wanted[subscription.id] = (subscription, cluster)
        for subscription_id, running in list(self._running.items()):
            if wanted.get(subscription_id) != (running.subscription, running.cluster):
                self._stop(subscription_id)
        for subscription_id, (subscription, cluster) in wanted.items():
            if subscription_id not in self._running:
                task = asyncio.create_task(self._supervise(subscription, cluster), name=f"subscription {subscription_id}")
                self._running[subscription_id] = _Running(subscription, cluster, task)
                log.info("subscription %s: consuming %s into %s", subscription_id, subscription.source, subscription.sink)

    def _stop(self, subscription_id: str) -> None:
        running = self._running.pop(subscription_id)
        running.task.cancel()
        self._stopping.add(running.task)
        running.task.add_done_callback(self._stopping.discard)
        log.info("subscription %s: stopped consuming %s", subscription_id, running.subscription.source)

    async def _supervise(self, subscription: Subscription, cluster: KafkaCluster) -> None:
        backoff_ms = self._settings.restart_initial_backoff_ms
        while True:
            started = time.monotonic()
            try:
                await self._make_consumer(subscription, cluster).run()
                raise RuntimeError("the consumer returned without being cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if (time.monotonic() - started) * 1000 > self._settings.restart_max_backoff_ms:
                    backoff_ms = self._settings.restart_initial_backoff_ms  # it ran well for a while: start over
                metrics.subscription_consumer_restarts.labels(subscription.id).inc()
                log.error("subscription %s: consumer failed (%r); restarting in %d ms", subscription.id, error, backoff_ms)
                await asyncio.sleep(backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, self._settings.restart_max_backoff_ms)

    async def close(self) -> None:
        """Stop every consumer (each leaves its group, so its partitions move to the other nodes at once)."""
        self._closed = True
        tasks = [running.task for running in self._running.values()] + list(self._stopping)
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
