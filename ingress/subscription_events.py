"""One Kafka record of a subscription's topic becomes one `Invoke` record with its exactly-once tag (pure: no I/O).

What the handler sees, as Restate passes it: the record value is the input;
the headers `kafka.offset`, `kafka.topic`, `kafka.partition`,
`kafka.timestamp`, `restate.subscription.id` and `kafka.key` (base64url of the
key) describe the event. duro also forwards the record's own Kafka headers
whose values are UTF-8 (Restate 1.7 does not); they never replace those six.

For a virtual object or workflow the record key is the object key, so the
events of one key land on the key's partition in topic order and run one at a
time. For a plain service, all events of one Kafka partition land on one duro
partition (derived from the group, topic and partition), so they are admitted
in topic order too. Invocation ids are derived from (group, topic, partition,
offset): the same event always gets the same id. A consumer keeps one
`PartitionEvents` per topic partition, which makes what every record of that
partition shares once; `build_event` is the same for one record alone.

The envelope's dedup tag is (producer, offset) with the producer named after
(group, topic, partition): the partition's state machine drops an Invoke whose
offset is not above the last one it applied from that producer
(`StateMachine._is_duplicate`), so an event delivered again after a crash or a
rebalance starts nothing.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from protocol.ids import InvocationId, UuidDeriver, derive_uuid, partition_key_base62
from protocol.retention import InvocationRetention
from protocol.routing import partition_key_for_key, workflow_invocation_id
from wal.records import Envelope, HandlerKind, IngressSink, Invoke, Record, RetryPolicy, ServiceType, Target, encode_record

KAFKA_OFFSET: Final = "kafka.offset"
KAFKA_TOPIC: Final = "kafka.topic"
KAFKA_PARTITION: Final = "kafka.partition"
KAFKA_TIMESTAMP: Final = "kafka.timestamp"
KAFKA_KEY: Final = "kafka.key"
SUBSCRIPTION_ID: Final = "restate.subscription.id"
_EVENT_HEADERS: Final = frozenset({KAFKA_OFFSET, KAFKA_TOPIC, KAFKA_PARTITION, KAFKA_TIMESTAMP, KAFKA_KEY, SUBSCRIPTION_ID})


class RecordProblem(str, enum.Enum):
    """Why a record could not be used as it is; the value is the metric label."""

    INVALID_JSON = "invalid_json"  # delivered anyway, as Restate does: the handler's SDK fails the invocation
    KEY_NOT_UTF8 = "key_not_utf8"  # skipped: an object key must be text
    TOO_LARGE = "too_large"  # skipped: over max_record_bytes


SKIPPED_PROBLEMS: Final = frozenset({RecordProblem.KEY_NOT_UTF8, RecordProblem.TOO_LARGE})


@dataclass(frozen=True, slots=True)
class EventRecord:
    """The parts of a Kafka record an invocation is made of."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class EventTarget:
    """Where a subscription's events go, resolved once per batch from the subscription and the deployment registry."""

    subscription_id: str
    group_id: str
    service: str
    handler: str
    service_type: ServiceType
    handler_kind: HandlerKind | None
    expects_json: bool
    retention: InvocationRetention
    max_record_bytes: int
    retry_policy: RetryPolicy | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A record turned into what is appended: the Invoke's partition key, the encoded record, and any problem to report."""

    invocation_id: str
    partition_key: int
    entry: bytes | None  # None: the record is skipped (see `problem`)
    problem: RecordProblem | None


def producer_of(group_id: str, topic: str, partition: int) -> str:
    """The dedup producer of one Kafka partition as consumed by one group: offsets only grow within it."""
    return f"kafka:{group_id}:{topic}:{partition}"


MAX_KEYS_REMEMBERED: Final = 4096
"""Record keys whose partition key, id characters and `kafka.key` header a partition's builder keeps (then it starts over)."""


class PartitionEvents:
    """Builds the events of one Kafka partition of one subscription, as `build_event` does for one record.

    What is the same for every record of (target, topic, partition) is made
    once: the dedup producer, the invocation ids' hashing prefix, the topic,
    partition and subscription headers; and per record key (at most
    `MAX_KEYS_REMEMBERED`) its partition key and the id characters that write it.
    """

    __slots__ = ("_fixed_headers", "_keyed", "_keys", "_producer", "_unkeyed", "_uuids", "_workflow_run", "partition", "target", "topic")

    def __init__(self, target: EventTarget, topic: str, partition: int) -> None:
        self.target = target
        self.topic = topic
        self.partition = partition
        self._producer = producer_of(target.group_id, topic, partition)
        self._uuids = UuidDeriver("kafka", self._producer)
        self._keyed = target.service_type is not ServiceType.SERVICE
        self._workflow_run = target.service_type is ServiceType.WORKFLOW and target.handler_kind is HandlerKind.WORKFLOW
        self._fixed_headers = ((KAFKA_TOPIC, topic), (KAFKA_PARTITION, str(partition)))
        self._keys: dict[bytes | None, tuple[int, str, str | None]] = {}  # record key -> partition key, its id characters, kafka.key
        unkeyed = int.from_bytes(derive_uuid("kafka-partition", self._producer)[:8], "big")
        self._unkeyed = (unkeyed, partition_key_base62(unkeyed))

    def build(
        self,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        sink: IngressSink | None,
        now_ms: int,
    ) -> Event:
        """The Invoke for the record at `offset` (or a skipped event), tagged for deduplication, with `sink` told of its outcome."""
        target = self.target
        body = value or b""
        problem = None
        if len(body) > target.max_record_bytes:
            problem = RecordProblem.TOO_LARGE
        object_key = None
        if self._keyed:
            try:
                object_key = (key or b"").decode()
            except UnicodeDecodeError:
                problem = problem or RecordProblem.KEY_NOT_UTF8
        if problem is None and target.expects_json and body:
            try:
                json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = RecordProblem.INVALID_JSON
        partition_key, key_base62, key_header = self._key_parts(key, object_key)
        if object_key is not None and self._workflow_run:
            invocation_id = workflow_invocation_id(target.service, object_key)
        else:
            invocation_id = InvocationId(partition_key, self._uuids.derive(str(offset))).text_on(key_base62)
        if problem in SKIPPED_PROBLEMS:
            return Event(invocation_id, partition_key, None, problem)
        event_headers = _headers(offset, self._fixed_headers, timestamp_ms, target.subscription_id, key_header, headers)
        invoke = Invoke(
            invocation_id=invocation_id,
            target=Target(target.service, target.handler, object_key, target.service_type, target.handler_kind),
            body=body,
            headers=tuple(event_headers),
            response_sink=sink,
            completion_retention_ms=target.retention.completion_ms,
            invoked_by_id=target.subscription_id,
            retry_policy=target.retry_policy,
            journal_retention_ms=target.retention.journal_ms,
        )
        entry = encode_record(Record(Envelope(now_ms, dedup=(self._producer, offset)), invoke))
        return Event(invocation_id, partition_key, entry, problem)

    def _key_parts(self, key: bytes | None, object_key: str | None) -> tuple[int, str, str | None]:
        """The partition key of a record with `key`, the id characters that write it, and its `kafka.key` header."""
        parts = self._keys.get(key)
        if parts is None:
            if len(self._keys) >= MAX_KEYS_REMEMBERED:
                self._keys.clear()
            key_header = None if key is None else base64.urlsafe_b64encode(key).decode()
            if object_key is None:
                parts = (*self._unkeyed, key_header)
            else:
                partition_key = partition_key_for_key(object_key)
                parts = (partition_key, partition_key_base62(partition_key), key_header)
            self._keys[key] = parts
        return parts


def build_event(target: EventTarget, record: EventRecord, sink: IngressSink | None, now_ms: int) -> Event:
    """The Invoke for `record` (or a skipped event), tagged for deduplication, with `sink` told of its outcome."""
    events = PartitionEvents(target, record.topic, record.partition)
    return events.build(record.offset, record.timestamp_ms, record.key, record.value, record.headers, sink, now_ms)


def event_headers(subscription_id: str, record: EventRecord) -> tuple[tuple[str, str], ...]:
    """Restate's event headers, then the record's own UTF-8 headers that do not collide with them."""
    key_header = None if record.key is None else base64.urlsafe_b64encode(record.key).decode()
    fixed = ((KAFKA_TOPIC, record.topic), (KAFKA_PARTITION, str(record.partition)))
    return tuple(_headers(record.offset, fixed, record.timestamp_ms, subscription_id, key_header, record.headers))


def _headers(
    offset: int,
    fixed: tuple[tuple[str, str], ...],
    timestamp_ms: int | None,
    subscription_id: str,
    key_header: str | None,
    own: Sequence[tuple[str, bytes | None]],
) -> list[tuple[str, str]]:
    """The event's headers in Restate's order (offset, topic and partition in `fixed`, timestamp, subscription, key), then its own."""
    headers = [(KAFKA_OFFSET, str(offset)), *fixed]
    if timestamp_ms is not None and timestamp_ms >= 0:
        headers.append((KAFKA_TIMESTAMP, str(timestamp_ms)))
    headers.append((SUBSCRIPTION_ID, subscription_id))
    if key_header is not None:
        headers.append((KAFKA_KEY, key_header))
    if own:
        _add_own_headers(headers, own)
    return headers


def _add_own_headers(headers: list[tuple[str, str]], own: Sequence[tuple[str, bytes | None]]) -> None:
    """Append the record's own headers whose values are UTF-8, except those that would replace an event header."""
    for name, value in own:
        if name.lower() in _EVENT_HEADERS or value is None:
            continue
        try:
            headers.append((name, value.decode()))
        except UnicodeDecodeError:
            continue
