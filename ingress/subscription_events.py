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
offset): the same event always gets the same id.

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
from dataclasses import dataclass
from typing import Final

from protocol.ids import InvocationId, derive_uuid
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
    headers: tuple[tuple[str, bytes], ...] = ()


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


def problem_of(target: EventTarget, record: EventRecord) -> RecordProblem | None:
    value = record.value or b""
    if len(value) > target.max_record_bytes:
        return RecordProblem.TOO_LARGE
    if target.service_type is not ServiceType.SERVICE and record.key is not None:
        try:
            record.key.decode()
        except UnicodeDecodeError:
            return RecordProblem.KEY_NOT_UTF8
    if target.expects_json and value:
        try:
            json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return RecordProblem.INVALID_JSON
    return None


def build_event(target: EventTarget, record: EventRecord, sink: IngressSink | None, now_ms: int) -> Event:
    """The Invoke for `record` (or a skipped event), tagged for deduplication, with `sink` told of its outcome."""
    producer = producer_of(target.group_id, record.topic, record.partition)
    problem = problem_of(target, record)
    key = None
    if target.service_type is not ServiceType.SERVICE and problem is not RecordProblem.KEY_NOT_UTF8:
        key = (record.key or b"").decode()
    invocation_id, partition_key = _identity(target, producer, record.offset, key)
    if problem in SKIPPED_PROBLEMS:
        return Event(invocation_id, partition_key, None, problem)
    invoke = Invoke(
        invocation_id=invocation_id,
        target=Target(target.service, target.handler, key, target.service_type, target.handler_kind),
        body=record.value or b"",
        headers=event_headers(target.subscription_id, record),
        response_sink=sink,
        completion_retention_ms=target.retention.completion_ms,
        invoked_by_id=target.subscription_id,
        retry_policy=target.retry_policy,
        journal_retention_ms=target.retention.journal_ms,
    )
    entry = encode_record(Record(Envelope(now_ms, dedup=(producer, record.offset)), invoke))
    return Event(invocation_id, partition_key, entry, problem)


def event_headers(subscription_id: str, record: EventRecord) -> tuple[tuple[str, str], ...]:
    """Restate's event headers, then the record's own UTF-8 headers that do not collide with them."""
    headers = [(KAFKA_OFFSET, str(record.offset)), (KAFKA_TOPIC, record.topic), (KAFKA_PARTITION, str(record.partition))]
    if record.timestamp_ms is not None and record.timestamp_ms >= 0:
        headers.append((KAFKA_TIMESTAMP, str(record.timestamp_ms)))
    headers.append((SUBSCRIPTION_ID, subscription_id))
    if record.key is not None:
        headers.append((KAFKA_KEY, base64.urlsafe_b64encode(record.key).decode()))
    for name, value in record.headers:
        if name.lower() in _EVENT_HEADERS or value is None:
            continue
        try:
            headers.append((name, value.decode()))
        except UnicodeDecodeError:
            continue
    return tuple(headers)


def _identity(target: EventTarget, producer: str, offset: int, key: str | None) -> tuple[str, int]:
    """The invocation id of the event at `offset`, and its partition key."""
    if key is not None and target.service_type is ServiceType.WORKFLOW and target.handler_kind is HandlerKind.WORKFLOW:
        invocation_id = workflow_invocation_id(target.service, key)
        return invocation_id, partition_key_for_key(key)
    if key is not None:
        partition_key = partition_key_for_key(key)
    else:
        partition_key = int.from_bytes(derive_uuid("kafka-partition", producer)[:8], "big")
    return str(InvocationId(partition_key, derive_uuid("kafka", producer, str(offset)))), partition_key
