"""A subscription on a 3-node duro cluster on Kafka: the topic's partitions are spread over the nodes, and a node killed with
kill -9 during consumption hands its share to the others, still in topic order per key and exactly once."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_subscriptions import events, lag, metric, seen, subscribe, wait_all_seen
from tests.kafka_topics import create_topic, group_members, produce
from tests.processes import DuroServer, ServiceEndpoint, http, wait_until

DURO_PARTITIONS = 6
TOPIC_PARTITIONS = 6
SESSION_TIMEOUT_MS = 6_000


class Nodes:
    def __init__(self, tmp: Path, bootstrap: str) -> None:
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.log_topic = f"duro-sub-{uuid.uuid4().hex[:8]}"
        self.nodes: dict[int, DuroServer] = {}

    def start(self, node_id: int) -> DuroServer:
        args = ["--log", "kafka", "--kafka-bootstrap", self.bootstrap, "--kafka-topic", self.log_topic, "--node-id", str(node_id)]
        env = {
            "DURO_KAFKA_METADATA_TOPIC": f"{self.log_topic}.meta",
            "DURO_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "DURO_SUBSCRIPTIONS__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "DURO_INGRESS__KAFKA_CLUSTERS": json.dumps([{"name": "local", "brokers": [self.bootstrap]}]),
        }
        node = DuroServer(self.tmp / f"node-{node_id}", self.tmp / f"node-{node_id}.log", DURO_PARTITIONS, args, env)
        node.start()
        self.nodes[node_id] = node
        return node


@pytest.fixture
def nodes(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Nodes]:
    cluster = Nodes(tmp_path, kafka_bootstrap)
    try:
        yield cluster
    finally:
        for node in cluster.nodes.values():
            node.stop()


def current_share(node: DuroServer, subscription_id: str) -> set[int]:
    """The topic partitions this node last logged that it consumes for the subscription (the log names every new owner)."""
    pattern = re.compile(rf"subscription {subscription_id}: node \d+ consumes \S+ partitions \[([\d, ]*)\]")
    matches = pattern.findall(node.log_path.read_text(errors="replace"))
    return {int(p) for p in matches[-1].split(",") if p.strip()} if matches else set()


def test_a_killed_nodes_topic_partitions_move_and_every_key_still_sees_its_events_in_order_once(
    nodes: Nodes, tmp_path: Path, kafka_bootstrap: str
) -> None:
    endpoint = ServiceEndpoint("tests.services.event_services:app", tmp_path / "service.log")
    endpoint.start()
    try:
        endpoint.wait_ready()
        members = [nodes.start(node_id) for node_id in (1, 2, 3)]
        for member in members:
            member.wait_ready(timeout_s=60)
        members[0].register(endpoint.uri)
        wait_until(lambda: all(http("GET", f"{m.admin}/services/EventLog")[0] == 200 for m in members), 30, "the registry on every node")
        topic = f"events-{uuid.uuid4().hex[:8]}"
        create_topic(kafka_bootstrap, topic, TOPIC_PARTITIONS)
        subscription_id = subscribe(members[1], topic, **{"auto.offset.reset": "earliest"})["id"]

        def spread() -> bool:
            shares = [current_share(m, subscription_id) for m in members]
            return all(shares) and set().union(*shares) == set(range(TOPIC_PARTITIONS)) and sum(map(len, shares)) == TOPIC_PARTITIONS

        wait_until(spread, 60, "the topic's partitions to be spread over the three nodes", interval_s=0.2)
        keys = [f"user-{i}" for i in range(30)]
        produce(kafka_bootstrap, topic, events(keys, range(50)))
        survivors, victim = members[:2], members[2]
        wait_until(
            lambda: sum(metric(m, "duro_subscription_records_total", subscription_id) for m in members) >= 600,
            120,
            "a share of the events to be consumed",
        )
        moved = current_share(victim, subscription_id)
        victim.kill9()
        killed_at = time.monotonic()
        produce(kafka_bootstrap, topic, events(keys, range(50, 100)))
        wait_until(
            lambda: (
                current_share(survivors[0], subscription_id) | current_share(survivors[1], subscription_id) == set(range(TOPIC_PARTITIONS))
            ),
            60,
            "the killed node's topic partitions to move to the survivors",
            interval_s=0.2,
        )
        moved_after_s = time.monotonic() - killed_at
        print(f"\nsubscription failover: topic partitions {sorted(moved)} moved {moved_after_s:.1f} s after kill -9")
        lists = wait_all_seen(survivors[0], keys, 100, timeout_s=300)
        wrong = {key: values for key, values in lists.items() if values != list(range(100))}
        assert not wrong, f"{len(wrong)} keys saw their events out of order, twice or not at all, e.g. {next(iter(wrong.items()))}"
        assert seen(survivors[1], keys[0]) == list(range(100)), "any node answers for any key"
        wait_until(lambda: lag(survivors[1], subscription_id)["lag"] == 0, 60, "the consumer group's lag to return to 0")
        assert group_members(kafka_bootstrap, subscription_id) == 2
        assert http("DELETE", f"{survivors[1].admin}/subscriptions/{subscription_id}")[0] == 202
        wait_until(lambda: group_members(kafka_bootstrap, subscription_id) == 0, 30, "every node's consumer to leave the group")
        assert http("GET", f"{survivors[0].admin}/subscriptions/{subscription_id}")[0] == 404, "the deletion reached the other node"
    finally:
        endpoint.stop()
