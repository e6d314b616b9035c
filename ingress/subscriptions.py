"""Kafka clusters and subscriptions, in Restate's shapes: what they are, how they are checked, and the registry every node shares.

A subscription connects a Kafka topic (`kafka://<cluster>/<topic>`) to a
handler (`service://<Service>/<handler>`); its options are Kafka consumer
properties in librdkafka's names. As Restate does, creating one resolves the
handler in the deployment registry, fills in `group.id` (the options', else the
cluster's, else the subscription id) and `client.id`, and refuses an unknown
cluster, service or handler. duro also refuses what would fail later: a topic
the cluster does not have, a handler that takes no input (every record value
becomes the input), and options its consumer cannot honour.

Kafka clusters come from the configuration (`ingress.kafka_clusters`, static)
or from the admin API (dynamic, stored with the subscriptions).

Everything is kept in a `KeyValueStore` under `subscription/<id>` and
`kafka-cluster/<name>`, one key per item: the cluster's metadata topic on
Kafka (so every node sees every change, and concurrent changes on two nodes
never overwrite each other), a file in the data dir on the embedded log.
Watchers hear every change, whichever node made it.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

from ingress import kafka_options
from ingress.errors import NotFound, Unavailable
from ingress.kafka_options import KafkaOptionError
from ingress.registry import FileRegistryStore, Registry, RegistryConflict, RegistryError, parse_resource_id, resource_id
from wal.records import HandlerKind, ServiceType

SUBSCRIPTIONS_FILE = "subscriptions.json"  # the data dir file of a node on the embedded log that holds its subscriptions

SUBSCRIPTION_ID_PREFIX: Final = "sub_1"
SUBSCRIPTION_KEY_PREFIX: Final = "subscription/"
CLUSTER_KEY_PREFIX: Final = "kafka-cluster/"
STORED_FORMAT_VERSION: Final = 1
INVALID_SUBSCRIPTION_CODE: Final = "META0009"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_RANDOM_BITS = 80  # a ULID: 48 bits of milliseconds, then 80 random bits
_Item = TypeVar("_Item")


class SubscriptionNotFound(RegistryError):
    kind = NotFound


class KafkaClusterNotFound(RegistryError):
    kind = NotFound


class KafkaUnavailable(RegistryError):
    """The Kafka cluster could not be asked (unreachable, timed out); retrying later may work."""

    kind = Unavailable


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    """A named Kafka cluster: its client properties (librdkafka names) and where it was defined."""

    name: str
    properties: Mapping[str, str]
    created_at_ms: int
    static: bool = False  # defined in duro's configuration, not through the admin API

    @property
    def bootstrap(self) -> str:
        bootstrap = kafka_options.bootstrap_of(self.properties)
        assert bootstrap is not None, "a cluster is checked to name its brokers when it is made"
        return bootstrap


@dataclass(frozen=True, slots=True)
class Subscription:
    """Events of `topic` on `cluster` invoke `service`/`handler`; `options` are its consumer properties."""

    id: str
    cluster: str
    topic: str
    service: str
    handler: str
    service_type: ServiceType
    handler_kind: HandlerKind | None
    options: Mapping[str, str] = field(default_factory=dict)
    created_at_ms: int = 0

    @property
    def source(self) -> str:
        return f"kafka://{self.cluster}/{self.topic}"

    @property
    def sink(self) -> str:
        return f"service://{self.service}/{self.handler}"

    @property
    def group_id(self) -> str:
        return self.options[kafka_options.GROUP_ID]


class KeyValueStore(Protocol):
    """Latest value per key, durable `put` (None deletes), and watchers called on every change (the cluster metadata topic's interface)."""

    values: dict[str, bytes]

    async def put(self, key: str, value: bytes | None) -> None: ...

    def watch(self, watcher: Callable[[str, bytes | None], None]) -> None: ...


TopicChecker = Callable[[KafkaCluster, str], Awaitable[None]]
"""Raises RegistryError if `topic` does not exist on the cluster (404 wording) or the cluster cannot be asked (KafkaUnavailable)."""


class FileKeyValues:
    """A `KeyValueStore` in one JSON file of the data dir (a single node on the embedded log); each `put` rewrites it atomically."""

    def __init__(self, data_dir: str | Path, file_name: str = SUBSCRIPTIONS_FILE) -> None:
        self._file = FileRegistryStore(data_dir, file_name)
        self.values: dict[str, bytes] = {}
        self._watchers: list[Callable[[str, bytes | None], None]] = []

    async def load(self) -> None:
        document = await self._file.load()
        if document is None:
            return
        parsed = json.loads(document)
        if not isinstance(parsed, dict) or parsed.get("format_version") != STORED_FORMAT_VERSION:
            raise RegistryError(f"{self._file.path} is not a subscription store of format_version {STORED_FORMAT_VERSION}")
        self.values = {key: value.encode() for key, value in parsed["entries"].items()}

    async def put(self, key: str, value: bytes | None) -> None:
        values = dict(self.values)
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        entries = {k: v.decode() for k, v in sorted(values.items())}
        await self._file.save(json.dumps({"format_version": STORED_FORMAT_VERSION, "entries": entries}, indent=1).encode())
        self.values = values
        for watcher in list(self._watchers):
            watcher(key, value)

    def watch(self, watcher: Callable[[str, bytes | None], None]) -> None:
        self._watchers.append(watcher)


def new_subscription_id(now_ms: int) -> str:
    """A fresh id in Restate's form (`sub_1` + 22 base62 characters of a ULID), so ids sort by creation time."""
    return resource_id(SUBSCRIPTION_ID_PREFIX, (now_ms % (1 << 48)) << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS))


def check_subscription_id(text: str) -> str:
    """`text` if it is a subscription id; ValueError naming the expected form."""
    parse_resource_id(SUBSCRIPTION_ID_PREFIX, text)
    return text


def static_clusters(configured: Sequence[tuple[str, Sequence[str], Mapping[str, str]]]) -> list[KafkaCluster]:
    """Clusters from the configuration, as (name, brokers, other properties); RegistryError naming a bad one."""
    clusters = []
    for name, brokers, extra in configured:
        properties = {**extra, "metadata.broker.list": ",".join(brokers)}
        clusters.append(_checked_cluster(name, properties, created_at_ms=0, static=True))
    return clusters


class SubscriptionRegistry:
    """Subscriptions and Kafka clusters, kept in a `KeyValueStore`; lookups are synchronous, changes are durable before they show.

    `watch` registers a callback run after every change (made here or, on
    Kafka, by another node).
    """

    def __init__(
        self,
        store: KeyValueStore,
        deployments: Registry,
        configured_clusters: Sequence[KafkaCluster],
        topic_checker: TopicChecker,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._store = store
        self._deployments = deployments
        self._static = {cluster.name: cluster for cluster in configured_clusters}
        self._check_topic = topic_checker
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._subscriptions: dict[str, Subscription] = {}
        self._dynamic: dict[str, KafkaCluster] = {}
        self._watchers: list[Callable[[], None]] = []
        for key, value in list(store.values.items()):
            self._install(key, value)
        store.watch(self._changed)

    def watch(self, watcher: Callable[[], None]) -> None:
        self._watchers.append(watcher)

    # ------------------------------------------------------------ lookups

    def subscriptions(self, sink: str | None = None, source: str | None = None) -> list[Subscription]:
        """Every subscription (oldest first), or those whose sink and/or source URI is exactly the given one."""
        chosen = [s for s in self._subscriptions.values() if (sink is None or s.sink == sink) and (source is None or s.source == source)]
        return sorted(chosen, key=lambda s: (s.created_at_ms, s.id))

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self._subscriptions.get(subscription_id)

    def clusters(self) -> list[KafkaCluster]:
        """Configured clusters first, then those created through the admin API, each group by name."""
        return [self._static[name] for name in sorted(self._static)] + [
            self._dynamic[name] for name in sorted(self._dynamic) if name not in self._static
        ]

    def cluster(self, name: str) -> KafkaCluster | None:
        return self._static.get(name) or self._dynamic.get(name)

    # ------------------------------------------------------------ subscriptions

    async def create_subscription(self, source: str, sink: str, options: Mapping[str, str] | None) -> Subscription:
        """Check, complete and store a subscription; RegistryError (400, 404 for nothing) naming what is wrong."""
        cluster_name, topic = _parse_source(source)
        service, handler, service_type, handler_kind = self._resolve_sink(sink)
        chosen = dict(options or {})
        try:
            kafka_options.check_properties(chosen, "subscription option")
        except KafkaOptionError as error:
            raise RegistryError(str(error), INVALID_SUBSCRIPTION_CODE) from None
        cluster = self.cluster(cluster_name)
        if cluster is None:
            names = json.dumps([c.name for c in self.clusters()])
            raise RegistryError(f"Kafka cluster '{cluster_name}' not found. Available clusters: {names}")
        await self._check_topic(cluster, topic)
        subscription_id = new_subscription_id(self._clock_ms())
        chosen.setdefault(kafka_options.GROUP_ID, cluster.properties.get(kafka_options.GROUP_ID, subscription_id))
        if kafka_options.CLIENT_ID not in chosen and kafka_options.CLIENT_ID not in cluster.properties:
            chosen[kafka_options.CLIENT_ID] = kafka_options.DEFAULT_CLIENT_ID
        subscription = Subscription(
            subscription_id, cluster.name, topic, service, handler, service_type, handler_kind, chosen, self._clock_ms()
        )
        await self._store.put(SUBSCRIPTION_KEY_PREFIX + subscription_id, _encode_subscription(subscription))
        self._changed(SUBSCRIPTION_KEY_PREFIX + subscription_id, _encode_subscription(subscription))
        return subscription

    async def delete_subscription(self, subscription_id: str) -> Subscription:
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None:
            raise SubscriptionNotFound(f"not found in the schema registry: subscription with id '{subscription_id}'")
        await self._store.put(SUBSCRIPTION_KEY_PREFIX + subscription_id, None)
        self._changed(SUBSCRIPTION_KEY_PREFIX + subscription_id, None)
        return subscription

    def _resolve_sink(self, sink: str) -> tuple[str, str, ServiceType, HandlerKind | None]:
        parts = urlsplit(sink)
        if parts.scheme != "service":
            raise RegistryError(
                f"[{INVALID_SUBSCRIPTION_CODE}] invalid sink URI '{sink}': must have a scheme segment, with supported schemes: [service].",
                INVALID_SUBSCRIPTION_CODE,
            )
        if not parts.netloc:
            raise RegistryError(
                f"[{INVALID_SUBSCRIPTION_CODE}] invalid sink URI '{sink}': sink URI of service type must have a authority segment"
                " containing the service name.",
                INVALID_SUBSCRIPTION_CODE,
            )
        service, handler = parts.netloc, parts.path[1:]
        not_found = f"[{INVALID_SUBSCRIPTION_CODE}] invalid sink URI '{sink}': cannot find service/handler specified in the sink URI"
        revision = self._deployments.service(service)
        if revision is None:
            raise RegistryError(f"{not_found}: no service '{service}' is registered.", INVALID_SUBSCRIPTION_CODE)
        resolved = self._deployments.resolve(service, handler)
        if resolved is None:
            known = ", ".join(sorted(revision.handlers))
            raise RegistryError(
                f"{not_found}: service '{service}' has no handler '{handler}' (its handlers: {known}).", INVALID_SUBSCRIPTION_CODE
            )
        if resolved.handler.input.content_type is None:
            raise RegistryError(
                f"[{INVALID_SUBSCRIPTION_CODE}] invalid sink URI '{sink}': the handler takes no input, but every Kafka record's"
                " value becomes the input of the invocation it starts; subscribe a handler that takes input.",
                INVALID_SUBSCRIPTION_CODE,
            )
        return service, handler, resolved.service_type, resolved.kind

    # ------------------------------------------------------------ Kafka clusters

    async def create_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        if name in self._static:
            raise RegistryConflict(
                f"kafka cluster '{name}' conflicts with static configuration. Cluster names in the registry cannot override"
                " clusters configured in ingress.kafka_clusters."
            )
        if name in self._dynamic:
            raise RegistryConflict(f"kafka cluster '{name}' already exists in schema registry")
        cluster = _checked_cluster(name, properties, self._clock_ms())
        await self._put_cluster(cluster)
        return cluster

    async def update_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        existing = self._existing_dynamic(name, "updated")
        cluster = _checked_cluster(name, properties, existing.created_at_ms)
        if cluster != existing:
            await self._put_cluster(cluster)
        return cluster

    async def delete_cluster(self, name: str, force: bool) -> None:
        self._existing_dynamic(name, "deleted")
        users = [s.id for s in self.subscriptions() if s.cluster == name]
        if users and not force:
            raise RegistryConflict(
                f"Removing the kafka cluster '{name}' leads to subscription '{users[0]}' being orphan. Remove the subscription"
                " first, or use the 'force' flag."
            )
        await self._store.put(CLUSTER_KEY_PREFIX + name, None)
        self._changed(CLUSTER_KEY_PREFIX + name, None)

    def _existing_dynamic(self, name: str, verb: str) -> KafkaCluster:
        if name in self._static:
            raise RegistryConflict(
                f"kafka cluster '{name}' cannot be {verb}, because it is defined in duro's configuration"
                " (ingress.kafka_clusters). Change the configuration instead."
            )
        cluster = self._dynamic.get(name)
        if cluster is None:
            raise KafkaClusterNotFound(f"The requested Kafka cluster '{name}' does not exist")
        return cluster

    async def _put_cluster(self, cluster: KafkaCluster) -> None:
        value = _encode_cluster(cluster)
        await self._store.put(CLUSTER_KEY_PREFIX + cluster.name, value)
        self._changed(CLUSTER_KEY_PREFIX + cluster.name, value)

    # ------------------------------------------------------------ store

    def _changed(self, key: str, value: bytes | None) -> None:
        """Adopt a stored change (the store's watcher; also called after our own writes) and tell the watchers if it changed anything."""
        if self._install(key, value):
            for watcher in list(self._watchers):
                watcher()

    def _install(self, key: str, value: bytes | None) -> bool:
        """Adopt one stored item; True if anything changed. Items of other key prefixes are someone else's."""
        if key.startswith(SUBSCRIPTION_KEY_PREFIX):
            subscription = None if value is None else _decode_subscription(value)
            return _replace(self._subscriptions, key[len(SUBSCRIPTION_KEY_PREFIX) :], subscription)
        if key.startswith(CLUSTER_KEY_PREFIX):
            cluster = None if value is None else _decode_cluster(value)
            return _replace(self._dynamic, key[len(CLUSTER_KEY_PREFIX) :], cluster)
        return False


def _replace(table: dict[str, _Item], name: str, item: _Item | None) -> bool:
    before = table.get(name)
    if item is None:
        table.pop(name, None)
    else:
        table[name] = item
    return before != item


def _parse_source(source: str) -> tuple[str, str]:
    parts = urlsplit(source)
    if parts.scheme != "kafka":
        raise RegistryError(
            f"[{INVALID_SUBSCRIPTION_CODE}] invalid source URI '{source}': must have a scheme segment, with supported schemes: [kafka].",
            INVALID_SUBSCRIPTION_CODE,
        )
    if not parts.netloc:
        raise RegistryError(
            f"[{INVALID_SUBSCRIPTION_CODE}] invalid source URI '{source}': source URI of Kafka type must have a authority segment"
            " containing the cluster name.",
            INVALID_SUBSCRIPTION_CODE,
        )
    topic = parts.path[1:]
    if not _TOPIC_NAME.fullmatch(topic):
        raise RegistryError(
            f"[{INVALID_SUBSCRIPTION_CODE}] invalid source URI '{source}': expected kafka://<cluster>/<topic> with a topic name of"
            " 1 to 249 characters from [a-zA-Z0-9._-]",
            INVALID_SUBSCRIPTION_CODE,
        )
    return parts.netloc, topic


def _checked_cluster(name: str, properties: Mapping[str, str], created_at_ms: int, static: bool = False) -> KafkaCluster:
    if not _CLUSTER_NAME.fullmatch(name):
        raise RegistryError(f"invalid Kafka cluster name '{name}': expected a host name (letters, digits, '.', '-', '_')")
    if not isinstance(properties, Mapping):
        raise RegistryError(f"kafka cluster '{name}' properties must be an object of string values")
    if kafka_options.bootstrap_of(properties) is None:
        raise RegistryError(f"kafka cluster '{name}' properties must contain either 'bootstrap.servers' or 'metadata.broker.list'")
    try:
        kafka_options.check_properties(properties, f"kafka cluster '{name}' property")
    except KafkaOptionError as error:
        raise RegistryError(str(error)) from None
    return KafkaCluster(name, dict(properties), created_at_ms, static)


# ---------------------------------------------------------------- stored form (JSON; fields only grow)


def _encode_subscription(subscription: Subscription) -> bytes:
    return json.dumps(
        {
            "format_version": STORED_FORMAT_VERSION,
            "id": subscription.id,
            "cluster": subscription.cluster,
            "topic": subscription.topic,
            "service": subscription.service,
            "handler": subscription.handler,
            "service_type": subscription.service_type.value,
            "handler_kind": None if subscription.handler_kind is None else subscription.handler_kind.value,
            "options": dict(subscription.options),
            "created_at_ms": subscription.created_at_ms,
        },
        sort_keys=True,
    ).encode()


def _decode_subscription(value: bytes) -> Subscription:
    raw: dict[str, Any] = json.loads(value)
    kind = raw.get("handler_kind")
    return Subscription(
        raw["id"],
        raw["cluster"],
        raw["topic"],
        raw["service"],
        raw["handler"],
        ServiceType(raw["service_type"]),
        None if kind is None else HandlerKind(kind),
        dict(raw["options"]),
        raw.get("created_at_ms", 0),
    )


def _encode_cluster(cluster: KafkaCluster) -> bytes:
    payload = {"format_version": STORED_FORMAT_VERSION, "name": cluster.name, "properties": dict(cluster.properties)}
    return json.dumps({**payload, "created_at_ms": cluster.created_at_ms}, sort_keys=True).encode()


def _decode_cluster(value: bytes) -> KafkaCluster:
    raw: dict[str, Any] = json.loads(value)
    return KafkaCluster(raw["name"], dict(raw["properties"]), raw.get("created_at_ms", 0))
