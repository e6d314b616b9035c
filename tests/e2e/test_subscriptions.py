"""Kafka subscriptions end to end: a real broker, `duro serve` (embedded log), the official Python SDK.

The handler (`tests/services/event_services.py`) appends each event's `seq` to
its key's state; a test compares every key's list with what was produced, so
a lost, repeated or reordered event fails it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_topics import committed_offsets, create_topic, group_members, produce
from tests.processes import REPO_ROOT, DuroServer, ServiceEndpoint, http, wait_until

CLUSTER = "local"


@dataclass
class Setup:
    tmp: Path
    bootstrap: str
    endpoint: ServiceEndpoint
    duro: DuroServer

    def new_topic(self, partitions: int = 4) -> str:
        topic = f"events-{uuid.uuid4().hex[:8]}"
        create_topic(self.bootstrap, topic, partitions)
        return topic

    def restart(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.duro.env, **(extra_env or {})}
        self.duro = DuroServer(self.duro.data_dir, self.tmp / f"duro-{time.monotonic_ns()}.log", partitions=4, env=env)
        self.duro.start()
        self.duro.wait_ready()


def duro_env(bootstrap: str, **extra: str) -> dict[str, str]:
    return {"DURO_INGRESS__KAFKA_CLUSTERS": json.dumps([{"name": CLUSTER, "brokers": [bootstrap]}]), **extra}


@pytest.fixture
def setup(tmp_path: Path, kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[Setup]:
    """duro with the Kafka cluster `local` configured and a service endpoint registered; `request.param` may name `app` and more `env`."""
    param = getattr(request, "param", {})
    endpoint = ServiceEndpoint(param.get("app", "tests.services.event_services:app"), tmp_path / "service.log")
    duro = DuroServer(tmp_path / "duro", tmp_path / "duro.log", partitions=4, env=duro_env(kafka_bootstrap, **param.get("env", {})))
    endpoint.start()
    duro.start()
    state = Setup(tmp_path, kafka_bootstrap, endpoint, duro)
    try:
        endpoint.wait_ready()
        duro.wait_ready()
        duro.register(endpoint.uri)
        yield state
    finally:
        state.duro.stop()
        endpoint.stop()


def subscribe(node: DuroServer, topic: str, **options: str) -> dict[str, Any]:
    body = {"source": f"kafka://{CLUSTER}/{topic}", "sink": "service://EventLog/record", "options": options}
    status, _, raw = http("POST", f"{node.admin}/subscriptions", body, timeout_s=60)
    assert status == 201, raw
    return dict(json.loads(raw))


def seen(node: DuroServer, key: str) -> list[int]:
    status, _, body = node.call(f"/EventLog/{key}/seen", timeout_s=60)
    assert status == 200, body
    return list(json.loads(body))


def lag(node: DuroServer, subscription_id: str) -> dict[str, Any]:
    status, _, body = http("GET", f"{node.admin}/subscriptions/{subscription_id}/lag", timeout_s=60)
    assert status == 200, body
    return dict(json.loads(body))


def metric_samples(node: DuroServer, name: str, subscription_id: str) -> list[float]:
    """A metric's samples for one subscription, from the node's /metrics."""
    status, _, body = http("GET", f"{node.admin}/metrics")
    assert status == 200
    pattern = re.compile(rf'^{name}\{{[^}}]*subscription="{subscription_id}"[^}}]*\}} (\S+)$', re.MULTILINE)
    return [float(value) for value in pattern.findall(body.decode())]


def metric(node: DuroServer, name: str, subscription_id: str) -> float:
    return sum(metric_samples(node, name, subscription_id))


def events(keys: list[str], seqs: range) -> list[tuple[str, dict[str, int]]]:
    """Every key's events `seqs`, interleaved across keys as a busy topic would carry them."""
    return [(key, {"seq": seq}) for seq in seqs for key in keys]


def wait_all_seen(node: DuroServer, keys: list[str], count: int, timeout_s: float) -> dict[str, list[int]]:
    """Every key's list once each has `count` events (polling only the keys still short of it), read again at the end."""
    lists: dict[str, list[int]] = {}

    def complete() -> bool:
        for key in keys:
            if len(lists.get(key, ())) < count:
                lists[key] = seen(node, key)
        return all(len(lists[key]) >= count for key in keys)

    wait_until(complete, timeout_s, f"{len(keys)} keys to see {count} events each", interval_s=1.0)
    return {key: seen(node, key) for key in keys}


def test_ten_thousand_events_over_a_kill9_run_in_topic_order_exactly_once(setup: Setup) -> None:
    topic = setup.new_topic(partitions=4)
    keys = [f"user-{i}" for i in range(100)]
    subscription = subscribe(setup.duro, topic, **{"auto.offset.reset": "earliest"})
    subscription_id = subscription["id"]
    produce(setup.bootstrap, topic, events(keys, range(50)), headers=[("x-source", b"test")])
    wait_until(
        lambda: metric(setup.duro, "duro_subscription_records_total", subscription_id) >= 1_500, 120, "a share of the events to be consumed"
    )
    appended_before = metric(setup.duro, "duro_subscription_records_total", subscription_id)
    setup.duro.kill9()
    committed = sum(committed_offsets(setup.bootstrap, subscription_id).values())
    produce(setup.bootstrap, topic, events(keys, range(50, 100)))  # while duro is down
    setup.restart()
    lists = wait_all_seen(setup.duro, keys, 100, timeout_s=300)
    appended_after = metric(setup.duro, "duro_subscription_records_total", subscription_id)
    assert appended_after == 10_000 - committed, "the restarted consumer resumed at the committed positions"
    print(
        f"\nkill -9 after at least {appended_before:.0f} Invokes, {committed} committed: at least {appended_before - committed:.0f} redelivered"
    )
    wrong = {key: values for key, values in lists.items() if values != list(range(100))}
    assert not wrong, f"{len(wrong)} keys saw their events out of order, twice or not at all, e.g. {next(iter(wrong.items()))}"
    wait_until(lambda: lag(setup.duro, subscription_id)["lag"] == 0, 60, "the consumer group's lag to return to 0")
    assert sum(p["end_offset"] for p in lag(setup.duro, subscription_id)["partitions"]) == 10_000
    wait_until(lambda: metric(setup.duro, "duro_subscription_lag_records", subscription_id) == 0, 30, "the lag metric to return to 0")
    status, _, body = setup.duro.call(f"/EventLog/{keys[0]}/headers")
    assert status == 200, body
    headers = json.loads(body)
    assert headers["kafka.topic"] == topic and headers["restate.subscription.id"] == subscription_id
    assert int(headers["kafka.offset"]) >= 0 and "kafka.partition" in headers and "kafka.timestamp" in headers
    assert headers["kafka.key"] == "dXNlci0w", "base64url of the record key user-0"


def test_refusals_name_the_unknown_cluster_topic_service_handler_and_a_handler_without_input(setup: Setup) -> None:
    topic = setup.new_topic(partitions=1)
    cases = [
        (f"kafka://nope/{topic}", "service://EventLog/record", 400, "Kafka cluster 'nope' not found. Available clusters: [\"local\"]"),
        ("kafka://local/no-such-topic", "service://EventLog/record", 400, "Kafka topic 'no-such-topic' does not exist in Kafka cluster"),
        (f"kafka://local/{topic}", "service://Nope/record", 400, "no service 'Nope' is registered"),
        (f"kafka://local/{topic}", "service://EventLog/nope", 400, "service 'EventLog' has no handler 'nope'"),
        (f"kafka://local/{topic}", "service://EventLog/seen", 400, "the handler takes no input"),
    ]
    for source, sink, status, message in cases:
        answer, _, body = http("POST", f"{setup.duro.admin}/subscriptions", {"source": source, "sink": sink}, timeout_s=60)
        assert (answer, json.loads(body)["message"].find(message) >= 0) == (status, True), (source, sink, body)
    status, _, body = http("GET", f"{setup.duro.admin}/subscriptions")
    assert json.loads(body) == {"subscriptions": []}


def test_delete_stops_consuming_and_recreating_with_the_group_resumes_from_its_position(setup: Setup) -> None:
    topic = setup.new_topic(partitions=2)
    group = f"group-{uuid.uuid4().hex[:8]}"
    first = subscribe(setup.duro, topic, **{"group.id": group, "auto.offset.reset": "earliest"})
    produce(setup.bootstrap, topic, events(["k"], range(10)))
    wait_all_seen(setup.duro, ["k"], 10, 60)
    assert http("DELETE", f"{setup.duro.admin}/subscriptions/{first['id']}")[0] == 202
    wait_until(lambda: group_members(setup.bootstrap, group) == 0, 30, "the deleted subscription's consumer to leave its group")
    produce(setup.bootstrap, topic, events(["k"], range(10, 20)))
    assert seen(setup.duro, "k") == list(range(10)), "nothing consumes the topic while the subscription is deleted"
    second = subscribe(setup.duro, topic, **{"group.id": group})
    assert wait_all_seen(setup.duro, ["k"], 20, 60) == {"k": list(range(20))}, "resumed at the committed position: no loss, no repeat"
    assert http("DELETE", f"{setup.duro.admin}/subscriptions/{second['id']}")[0] == 202
    wait_until(lambda: group_members(setup.bootstrap, group) == 0, 30, "the second subscription's consumer to leave")
    third = subscribe(setup.duro, topic)  # its own group, auto.offset.reset=latest: only what comes after it started
    wait_until(
        lambda: len(metric_samples(setup.duro, "duro_subscription_lag_records", third["id"])) == 2,
        30,
        "the new consumer to know its start position in both partitions (its lag metric)",
    )
    produce(setup.bootstrap, topic, events(["k"], range(20, 25)))
    assert wait_all_seen(setup.duro, ["k"], 25, 60) == {"k": list(range(25))}


@pytest.mark.parametrize("setup", [{"env": {"DURO_SUBSCRIPTIONS__MAX_PENDING_INVOCATIONS": "5"}}], indirect=True)
def test_the_consumer_pauses_at_max_pending_invocations_and_resumes(setup: Setup) -> None:
    topic = setup.new_topic(partitions=1)
    keys = [f"slow-{i}" for i in range(20)]
    subscription_id = subscribe(setup.duro, topic, **{"auto.offset.reset": "earliest"})["id"]
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pending = metric(setup.duro, "duro_subscription_pending_invocations", subscription_id)
            samples.append((pending, metric(setup.duro, "duro_subscription_paused", subscription_id)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        produce(setup.bootstrap, topic, [(key, {"seq": seq, "sleep_ms": 150}) for seq in range(2) for key in keys])
        assert wait_all_seen(setup.duro, keys, 2, 120) == {key: [0, 1] for key in keys}
        wait_until(lambda: metric(setup.duro, "duro_subscription_pending_invocations", subscription_id) == 0, 30, "nothing pending")
    finally:
        done.set()
        sampler.join()
    assert max(pending for pending, _ in samples) <= 5, "never more invocations pending than max_pending_invocations"
    assert any(paused == 1 for _, paused in samples), "the consumer paused at the bound"
    assert metric(setup.duro, "duro_subscription_paused", subscription_id) == 0, "and resumed"


@pytest.mark.parametrize("setup", [{"app": "examples.app:app"}], indirect=True)
def test_the_shopping_cart_example_is_fed_from_a_topic(setup: Setup) -> None:
    """The README's example: the seed's ShoppingCart (duro's SDK), add_item events keyed by user from examples/cart_events.py."""
    topic = f"cart-events-{uuid.uuid4().hex[:8]}"
    producer = [sys.executable, "-m", "examples.cart_events", "--bootstrap", setup.bootstrap, "--topic", topic]
    created = subprocess.run([*producer, "--items", "0"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False)
    assert created.returncode == 0, created.stderr
    body = {"source": f"kafka://{CLUSTER}/{topic}", "sink": "service://ShoppingCart/add_item", "options": {"auto.offset.reset": "earliest"}}
    assert http("POST", f"{setup.duro.admin}/subscriptions", body, timeout_s=60)[0] == 201
    run = subprocess.run(
        [*producer, "--users", "ada,bob", "--items", "3"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False
    )
    assert run.returncode == 0, run.stderr
    expected = {m[0]: float(m[1]) for m in re.findall(r"^(\w+): 3 add_item events produced; they add ([\d.]+)", run.stdout, re.MULTILINE)}
    assert set(expected) == {"ada", "bob"}, run.stdout

    def totals() -> dict[str, float]:
        return {user: float(json.loads(setup.duro.call(f"/ShoppingCart/{user}/get_total")[2])) for user in expected}

    wait_until(lambda: totals() == expected, 60, f"the carts to reach {expected}", interval_s=0.5)
