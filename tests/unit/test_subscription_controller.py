"""The subscription controller follows the registry (start, stop, restart on a changed cluster) and restarts failed consumers with backoff."""

from __future__ import annotations

import asyncio

from ingress_fakes import make_registry
from test_subscriptions import MemoryKeyValues, check_topic

from ingress.settings import SubscriptionSettings
from ingress.subscription_controller import SubscriptionController
from ingress.subscriptions import KafkaCluster, Subscription, SubscriptionRegistry


class FakeConsumer:
    def __init__(self, log: list[str], subscription: Subscription, cluster: KafkaCluster, failures: list[int]) -> None:
        self._log = log
        self._name = f"{subscription.id}@{cluster.properties['bootstrap.servers']}"
        self._failures = failures

    async def run(self) -> None:
        self._log.append(f"start {self._name}")
        try:
            if self._failures:
                self._failures.pop()
                raise RuntimeError("broker unreachable")
            await asyncio.Event().wait()
        finally:
            self._log.append(f"stop {self._name}")


async def wait_for(condition, timeout_s: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_consumers_follow_subscriptions_and_failed_ones_restart() -> None:
    registry = SubscriptionRegistry(MemoryKeyValues(), await make_registry(), [], check_topic)
    events: list[str] = []
    failures = [1, 1]  # the first two runs fail
    settings = SubscriptionSettings(restart_initial_backoff_ms=10, restart_max_backoff_ms=40)
    controller = SubscriptionController(registry, lambda s, c: FakeConsumer(events, s, c, failures), settings)
    controller.start()
    try:
        await registry.create_cluster("local", {"bootstrap.servers": "a:1"})
        first = await registry.create_subscription("kafka://local/orders", "service://Counter/add", None)
        await wait_for(lambda: events.count(f"start {first.id}@a:1") == 3)
        assert not failures, "two failed runs, then the third keeps running"
        assert controller.running == {first.id}

        await registry.update_cluster("local", {"bootstrap.servers": "b:2"})
        await wait_for(lambda: f"start {first.id}@b:2" in events and f"stop {first.id}@a:1" in events[-2:])

        second = await registry.create_subscription("kafka://local/carts", "service://Greeter/echo", None)
        await wait_for(lambda: f"start {second.id}@b:2" in events)
        await registry.delete_subscription(first.id)
        await wait_for(lambda: events[-1] == f"stop {first.id}@b:2")
        assert controller.running == {second.id}
    finally:
        await controller.close()
    assert events[-1] == f"stop {second.id}@b:2"
