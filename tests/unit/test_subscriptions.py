"""The subscription registry and its admin routes (Restate's shapes), over a fake topic checker; the file store; Kafka property mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ingress_fakes import make_registry

from ingress import kafka_options
from ingress.admin import build_admin_app
from ingress.kafka_options import KafkaOptionError
from ingress.registry import RegistryError
from ingress.subscription_admin import SubscriptionAdmin
from ingress.subscriptions import (
    FileKeyValues,
    KafkaCluster,
    SubscriptionRegistry,
    check_subscription_id,
    new_subscription_id,
    static_clusters,
)
from wal.memory import MemoryLog
from wal.records import HandlerKind, ServiceType
from wal.replies import ReplyBus

TOPICS = {"orders", "carts"}


class MemoryKeyValues:
    """A shared store as the Kafka metadata topic behaves: every put reaches every watcher, including other registries."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self._watchers: list[Callable[[str, bytes | None], None]] = []
        self.puts = 0

    async def put(self, key: str, value: bytes | None) -> None:
        self.puts += 1
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value
        for watcher in list(self._watchers):
            watcher(key, value)

    def watch(self, watcher: Callable[[str, bytes | None], None]) -> None:
        self._watchers.append(watcher)


async def check_topic(cluster: KafkaCluster, topic: str) -> None:
    if topic not in TOPICS:
        raise RegistryError(f"Kafka topic '{topic}' does not exist in Kafka cluster '{cluster.name}'")


class FakeInspector:
    async def check_topic(self, cluster: KafkaCluster, topic: str) -> None:
        await check_topic(cluster, topic)


@dataclass
class Env:
    admin: httpx.AsyncClient
    subscriptions: SubscriptionRegistry
    store: MemoryKeyValues


STATIC = static_clusters([("configured", ["10.0.0.1:9092", "10.0.0.2:9092"], {"security.protocol": "PLAINTEXT"})])


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    registry = await make_registry()
    store = MemoryKeyValues()
    subscriptions = SubscriptionRegistry(store, registry, STATIC, check_topic, clock_ms=lambda: 1_700_000_000_000)
    admin_routes = SubscriptionAdmin(subscriptions, FakeInspector()).routes()  # type: ignore[arg-type] # lag is not read here
    app = build_admin_app(MemoryLog(1), registry, ReplyBus(1), extra_routes=admin_routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as admin:
        yield Env(admin, subscriptions, store)


async def create_cluster(env: Env, name: str = "local", **properties: str) -> httpx.Response:
    return await env.admin.post("/kafka-clusters", json={"name": name, "properties": properties or {"bootstrap.servers": "k:9092"}})


async def subscribe(env: Env, source: str = "kafka://local/orders", sink: str = "service://Counter/add", **options: str) -> httpx.Response:
    body: dict[str, Any] = {"source": source, "sink": sink}
    if options:
        body["options"] = {k.replace("_", "."): v for k, v in options.items()}
    return await env.admin.post("/subscriptions", json=body)


async def test_create_subscription_answers_restates_shape_and_fills_group_and_client_ids(env: Env) -> None:
    assert (await create_cluster(env)).status_code == 201
    response = await subscribe(env, auto_offset_reset="earliest")
    assert response.status_code == 201, response.text
    body = response.json()
    subscription_id = body["id"]
    assert check_subscription_id(subscription_id) == subscription_id and len(subscription_id) == 27
    assert response.headers["location"] == f"subscriptions/{subscription_id}"
    assert body == {
        "id": subscription_id,
        "source": "kafka://local/orders",
        "sink": "service://Counter/add",
        "options": {"auto.offset.reset": "earliest", "group.id": subscription_id, "client.id": "duro"},
    }
    stored = env.subscriptions.subscription(subscription_id)
    assert stored is not None and (stored.service_type, stored.handler_kind) == (ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
    assert (await env.admin.get(f"/v3/subscriptions/{subscription_id}")).json() == body


async def test_group_id_comes_from_the_options_then_the_cluster(env: Env) -> None:
    await create_cluster(env, "withgroup", **{"bootstrap.servers": "k:9092", "group.id": "cluster-group", "client.id": "c"})
    from_cluster = (await subscribe(env, "kafka://withgroup/orders")).json()
    assert from_cluster["options"] == {"group.id": "cluster-group"}, "client.id is the cluster's, so not repeated"
    from_options = (await subscribe(env, "kafka://withgroup/orders", group_id="mine")).json()
    assert from_options["options"]["group.id"] == "mine"


async def test_list_filters_by_exact_sink_and_source(env: Env) -> None:
    await create_cluster(env)
    first = (await subscribe(env)).json()["id"]
    second = (await subscribe(env, "kafka://local/carts", "service://Greeter/echo")).json()["id"]
    listed = (await env.admin.get("/subscriptions")).json()["subscriptions"]
    assert sorted(s["id"] for s in listed) == sorted([first, second])
    by_sink = (await env.admin.get("/subscriptions", params={"sink": "service://Greeter/echo"})).json()["subscriptions"]
    assert [s["id"] for s in by_sink] == [second]
    by_source = (await env.admin.get("/subscriptions", params={"source": "kafka://local/orders"})).json()["subscriptions"]
    assert [s["id"] for s in by_source] == [first]


async def test_delete_removes_it_and_unknown_ids_answer_like_restate(env: Env) -> None:
    await create_cluster(env)
    subscription_id = (await subscribe(env)).json()["id"]
    assert (await env.admin.delete(f"/subscriptions/{subscription_id}")).status_code == 202
    assert env.subscriptions.subscriptions() == [] and f"subscription/{subscription_id}" not in env.store.values
    missing = await env.admin.get(f"/subscriptions/{subscription_id}")
    assert missing.status_code == 404
    assert missing.json()["message"] == f"The requested subscription '{subscription_id}' does not exist"
    gone = await env.admin.delete(f"/subscriptions/{subscription_id}")
    assert (gone.status_code, gone.json()["message"]) == (
        404,
        f"not found in the schema registry: subscription with id '{subscription_id}'",
    )
    garbage = await env.admin.get("/subscriptions/garbage")
    assert garbage.status_code == 400 and "Cannot parse `subscription` with value `garbage`" in garbage.json()["message"]


@pytest.mark.parametrize(
    ("source", "sink", "options", "message"),
    [
        (
            "kafka://nope/orders",
            "service://Counter/add",
            {},
            'Kafka cluster \'nope\' not found. Available clusters: ["configured", "local"]',
        ),
        ("kafka://local/missing", "service://Counter/add", {}, "Kafka topic 'missing' does not exist in Kafka cluster 'local'"),
        ("kafka://local/orders", "service://Nope/add", {}, "cannot find service/handler specified in the sink URI: no service 'Nope'"),
        ("kafka://local/orders", "service://Counter/nope", {}, "service 'Counter' has no handler 'nope' (its handlers: add, get)"),
        ("kafka://local/orders", "service://Counter/get", {}, "the handler takes no input"),
        ("http://local/orders", "service://Counter/add", {}, "must have a scheme segment, with supported schemes: [kafka]"),
        ("kafka://local/orders", "foo://Counter/add", {}, "must have a scheme segment, with supported schemes: [service]"),
        ("kafka://local", "service://Counter/add", {}, "expected kafka://<cluster>/<topic>"),
        ("kafka://local/orders", "service://Counter/add", {"bogus.option": "1"}, "'bogus.option' is not supported"),
        ("kafka://local/orders", "service://Counter/add", {"auto.offset.reset": "sometimes"}, "'auto.offset.reset' is invalid"),
    ],
)
async def test_refusals_name_what_is_wrong(env: Env, source: str, sink: str, options: dict[str, str], message: str) -> None:
    await create_cluster(env)
    response = await env.admin.post("/subscriptions", json={"source": source, "sink": sink, "options": options})
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert env.subscriptions.subscriptions() == []


async def test_a_subscription_made_on_one_node_is_seen_by_another_sharing_the_store(env: Env) -> None:
    other = SubscriptionRegistry(env.store, await make_registry(), STATIC, check_topic)
    changes: list[int] = []
    other.watch(lambda: changes.append(1))
    await create_cluster(env)
    subscription_id = (await subscribe(env)).json()["id"]
    assert other.subscription(subscription_id) is not None and other.cluster("local") is not None
    await env.admin.delete(f"/subscriptions/{subscription_id}")
    assert other.subscription(subscription_id) is None and len(changes) == 3


async def test_kafka_clusters_crud_with_restates_shapes_and_conflicts(env: Env) -> None:
    created = await create_cluster(env, "local", **{"bootstrap.servers": "k:9092", "sasl.password": "hunter2"})
    assert created.status_code == 201 and created.headers["location"] == "kafka-clusters/local"
    assert created.json()["properties"] == {"bootstrap.servers": "k:9092", "sasl.password": "***"}
    assert created.json()["created_at"] == "2023-11-14T22:13:20.000Z"
    assert (await create_cluster(env)).status_code == 409
    assert (await create_cluster(env, "configured")).status_code == 409
    missing_brokers = await env.admin.post("/kafka-clusters", json={"name": "x", "properties": {"client.id": "a"}})
    assert missing_brokers.status_code == 400 and "must contain either 'bootstrap.servers'" in missing_brokers.json()["message"]
    listed = (await env.admin.get("/kafka-clusters")).json()["clusters"]
    assert [c["name"] for c in listed] == ["configured", "local"]
    assert listed[0]["properties"]["metadata.broker.list"] == "10.0.0.1:9092,10.0.0.2:9092"
    subscription_id = (await subscribe(env)).json()["id"]
    described = (await env.admin.get("/kafka-clusters/local", params={"include_subscriptions": "true"})).json()
    assert [s["id"] for s in described["subscriptions"]] == [subscription_id]
    patched = await env.admin.patch("/kafka-clusters/local", json={"properties": {"bootstrap.servers": "k2:9092"}})
    assert patched.status_code == 200 and patched.json()["properties"] == {"bootstrap.servers": "k2:9092"}
    assert (await env.admin.patch("/kafka-clusters/configured", json={"properties": {"bootstrap.servers": "a:1"}})).status_code == 409
    orphaning = await env.admin.delete("/kafka-clusters/local")
    assert orphaning.status_code == 409 and subscription_id in orphaning.json()["message"]
    assert (await env.admin.delete("/kafka-clusters/local", params={"force": "true"})).status_code == 202
    assert (await env.admin.get("/kafka-clusters/local")).status_code == 404


async def test_the_file_store_keeps_subscriptions_across_restarts(tmp_path: Path) -> None:
    store = FileKeyValues(tmp_path)
    await store.load()
    registry = SubscriptionRegistry(store, await make_registry(), STATIC, check_topic)
    created = await registry.create_subscription("kafka://configured/orders", "service://Greeter/echo", None)
    reopened = FileKeyValues(tmp_path)
    await reopened.load()
    again = SubscriptionRegistry(reopened, await make_registry(), STATIC, check_topic)
    assert again.subscription(created.id) == created


def test_ids_are_ulids_in_restates_form_and_sort_by_time() -> None:
    early, late = new_subscription_id(1_000), new_subscription_id(2_000)
    assert early.startswith("sub_1") and len(early) == 27 and early < late
    with pytest.raises(ValueError, match="expected 'sub_1' followed by 22 base62"):
        check_subscription_id("sub_15VqmTOnXH3")


def test_kafka_properties_map_to_aiokafka_and_secrets_are_redacted() -> None:
    properties = {
        "metadata.broker.list": "a:1,b:2",
        "group.id": "g",
        "auto.offset.reset": "smallest",
        "session.timeout.ms": "7000",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanism": "scram-sha-256",
        "sasl.username": "u",
        "sasl.password": "p",
        "enable.auto.commit": "true",
    }
    kafka_options.check_properties(properties, "option")
    kwargs = kafka_options.consumer_kwargs(properties)
    assert kwargs == {
        "bootstrap_servers": "a:1,b:2",
        "group_id": "g",
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 7000,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    assert kafka_options.redacted(properties)["sasl.password"] == "***" and kafka_options.redacted(properties)["group.id"] == "g"
    with pytest.raises(KafkaOptionError, match="'session.timeout.ms' is invalid: expected a positive number"):
        kafka_options.check_properties({"session.timeout.ms": "-1"}, "option")
