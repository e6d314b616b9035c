"""Log records: every fact a partition applies, as frozen dataclasses, with their msgpack codec.

A record is an `Envelope` (who wrote it, when, and its dedup tag) around one
body. Record kinds are numbered in `RecordKind`; a number once assigned is never
changed or reused, and new fields are appended with a default so that old
records still decode (stored formats only grow).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Union

import msgpack


class RecordKind(enum.IntEnum):
    """Wire tag of each record body. Never renumber; only append."""

    ANNOUNCE_LEADER = 1
    INVOKE = 2
    ATTEMPT_EVENTS = 3
    ATTEMPT_FAILED = 4
    TIMER_FIRED = 5
    CANCEL = 6
    KILL = 7
    PURGE = 8
    ATTACH = 9
    SIGNAL = 10
    INVOCATION_RESPONSE = 11
    OUTBOX_TRUNCATE = 12
    RESUME = 13


class ServiceType(str, enum.Enum):
    SERVICE = "service"
    VIRTUAL_OBJECT = "virtual_object"
    WORKFLOW = "workflow"


class HandlerKind(str, enum.Enum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    WORKFLOW = "workflow"


@dataclass(frozen=True, slots=True)
class Target:
    """The handler an invocation runs: service, handler and (for objects and workflows) the key."""

    service: str
    handler: str
    key: str | None
    service_type: ServiceType
    handler_kind: HandlerKind | None  # None for plain services

    @property
    def is_keyed(self) -> bool:
        return self.service_type is not ServiceType.SERVICE

    @property
    def takes_lock(self) -> bool:
        """True if this handler must hold the key's exclusive lock while it runs."""
        return self.service_type is ServiceType.VIRTUAL_OBJECT and self.handler_kind is not HandlerKind.SHARED

    @property
    def is_workflow_run(self) -> bool:
        return self.service_type is ServiceType.WORKFLOW and self.handler_kind is HandlerKind.WORKFLOW


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of an invocation or a completion: a value or a failure, never both."""

    value: bytes | None = None
    failure: Failure | None = None

    def __post_init__(self) -> None:
        assert (self.value is None) or (self.failure is None), "an outcome is a value or a failure, not both"

    @property
    def is_success(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class IngressSink:
    """Someone waiting on an HTTP request at a node's ingress: answered through the reply bus."""

    node_id: int
    request_id: int


@dataclass(frozen=True, slots=True)
class JournalSink:
    """An invocation waiting on a completion in its journal (a call result, an attach)."""

    invocation_id: str
    completion_id: int
    notification_type: int  # protocol message type of the notification to write


Sink = Union[IngressSink, JournalSink]


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who appended a record, when, and its exactly-once tag.

    `timestamp_ms` is the appender's wall clock and the only clock apply sees.
    `leader_epoch` is set on records written on behalf of a partition leader
    (0 for records from the ingress or the admin API); apply ignores records of
    a superseded epoch. `dedup` is (producer, sequence): a receiver drops a
    record whose sequence is not greater than the last one seen from that producer.
    """

    timestamp_ms: int
    leader_epoch: int = 0
    dedup: tuple[str, int] | None = None


# ---------------------------------------------------------------- record bodies


@dataclass(frozen=True, slots=True)
class AnnounceLeader:
    node_id: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class Invoke:
    """Start (or, with a known id, deduplicate) an invocation."""

    invocation_id: str
    target: Target
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    execute_at_ms: int | None = None  # delayed send: do not start before this time
    response_sink: Sink | None = None  # who gets the outcome (a call)
    submit_sink: IngressSink | None = None  # who gets Accepted/PreviouslyAccepted (a send)
    completion_retention_ms: int = 0  # keep the outcome this long after completion (attach, idempotency)


@dataclass(frozen=True, slots=True)
class AttemptFrame:
    """One protocol message an SDK sent during an attempt.

    `call_target` annotates Call / OneWayCall commands with the kind of the
    target handler, resolved by the invoker against the registry (None if the
    target is unknown; the call then fails with 404).
    """

    message_type: int
    flags: int
    payload: bytes
    call_target: Target | None = None


@dataclass(frozen=True, slots=True)
class AttemptEvents:
    """Messages an SDK sent in attempt `attempt` of an invocation, in order.

    The first record of an attempt of a not-yet-pinned invocation carries the
    deployment and protocol version it ran on; apply pins them.
    """

    invocation_id: str
    attempt: int
    frames: tuple[AttemptFrame, ...]
    deployment_id: str | None = None
    protocol_version: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt ended without End or Suspension (transport error, Error message, bad status)."""

    invocation_id: str
    attempt: int
    failure: Failure
    retry_after_ms: int | None = None  # the deployment's hint (next_retry_delay, Retry-After)
    deployment_id: str | None = None
    protocol_version: int | None = None


class TimerKind(enum.IntEnum):
    SLEEP = 1  # complete a Sleep command: ref = completion id
    DELAYED_INVOKE = 2  # start a scheduled invocation
    RETRY = 3  # start the next attempt: ref = attempt number it supersedes
    CLEANUP = 4  # drop a completed invocation after its retention


@dataclass(frozen=True, slots=True)
class TimerFired:
    fire_at_ms: int
    invocation_id: str
    timer_kind: TimerKind
    ref: int = 0


@dataclass(frozen=True, slots=True)
class Cancel:
    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class Kill:
    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class Purge:
    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class Attach:
    """Wait for (block=True) or read (block=False) the outcome of an invocation."""

    invocation_id: str
    sink: Sink
    block: bool = True


@dataclass(frozen=True, slots=True)
class Signal:
    """Deliver a signal (awakeable completion, cancel) to an invocation's journal."""

    invocation_id: str
    signal_index: int | None
    signal_name: str | None
    outcome: Outcome | None  # None means void
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class InvocationResponse:
    """The outcome of an invocation, delivered to a waiting journal (call result, attach)."""

    sink: JournalSink
    outcome: Outcome
    invocation_id: str  # the invocation whose outcome this is


@dataclass(frozen=True, slots=True)
class OutboxTruncate:
    """The shuffle delivered outbox messages up to and including `up_to_seq`."""

    up_to_seq: int


RecordBody = Union[
    AnnounceLeader,
    Invoke,
    AttemptEvents,
    AttemptFailed,
    TimerFired,
    Cancel,
    Kill,
    Purge,
    Resume,
    Attach,
    Signal,
    InvocationResponse,
    OutboxTruncate,
]


@dataclass(frozen=True, slots=True)
class Record:
    envelope: Envelope
    body: RecordBody


# ---------------------------------------------------------------- codec

_BODY_KINDS: dict[type, RecordKind] = {
    AnnounceLeader: RecordKind.ANNOUNCE_LEADER,
    Invoke: RecordKind.INVOKE,
    AttemptEvents: RecordKind.ATTEMPT_EVENTS,
    AttemptFailed: RecordKind.ATTEMPT_FAILED,
    TimerFired: RecordKind.TIMER_FIRED,
    Cancel: RecordKind.CANCEL,
    Kill: RecordKind.KILL,
    Purge: RecordKind.PURGE,
    Attach: RecordKind.ATTACH,
    Signal: RecordKind.SIGNAL,
    InvocationResponse: RecordKind.INVOCATION_RESPONSE,
    OutboxTruncate: RecordKind.OUTBOX_TRUNCATE,
    Resume: RecordKind.RESUME,
}
_KIND_BODIES: dict[int, type] = {int(kind): cls for cls, kind in _BODY_KINDS.items()}

# Nested value types and their wire tags (never renumber).
_NESTED_TAGS: dict[type, int] = {
    Target: 1,
    Failure: 2,
    Outcome: 3,
    IngressSink: 4,
    JournalSink: 5,
    AttemptFrame: 6,
}
_TAG_NESTED: dict[int, type] = {tag: cls for cls, tag in _NESTED_TAGS.items()}
_ENUM_FIELDS: dict[tuple[type, str], type[enum.Enum]] = {
    (Target, "service_type"): ServiceType,
    (Target, "handler_kind"): HandlerKind,
    (TimerFired, "timer_kind"): TimerKind,
}


class RecordDecodeError(ValueError):
    """A log entry is not a record this version of duro can read."""


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _to_wire(value: Any) -> Any:
    if value is None or isinstance(value, (bytes, str, int, float)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return value.value
    cls = type(value)
    tag = _NESTED_TAGS.get(cls)
    if tag is not None:
        return msgpack.ExtType(tag, msgpack.packb([_to_wire(getattr(value, name)) for name in _field_names(cls)], use_bin_type=True))
    if isinstance(value, tuple | list):
        return [_to_wire(item) for item in value]
    return value


def _from_fields(cls: type, items: list[Any], enum_fields: dict[str, type[enum.Enum]] | None = None) -> Any:
    names = _field_names(cls)
    if len(items) > len(names):
        raise RecordDecodeError(f"{cls.__name__} has {len(names)} fields, the record has {len(items)}")
    kwargs: dict[str, Any] = {}
    for name, raw in zip(names, items):
        enum_cls = enum_fields.get(name) if enum_fields else _ENUM_FIELDS.get((cls, name))
        if enum_cls is not None and raw is not None:
            kwargs[name] = enum_cls(raw)
        elif type(raw) is list:
            kwargs[name] = _freeze(raw)
        else:
            kwargs[name] = raw
    return cls(**kwargs)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


def _ext_hook(tag: int, data: bytes) -> Any:
    cls = _TAG_NESTED.get(tag)
    if cls is None:
        raise RecordDecodeError(f"unknown nested value tag {tag}")
    return _from_fields(cls, msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, use_list=True))


def encode_record(record: Record) -> bytes:
    """Encode a record as msgpack: [kind, envelope..., body fields...]."""
    body = record.body
    kind = _BODY_KINDS[type(body)]
    env = record.envelope
    fields = [_to_wire(getattr(body, name)) for name in _field_names(type(body))]
    return msgpack.packb([int(kind), env.timestamp_ms, env.leader_epoch, list(env.dedup) if env.dedup else None, fields], use_bin_type=True)


def decode_record(data: bytes) -> Record:
    """Decode bytes written by `encode_record`; raise RecordDecodeError naming what is wrong."""
    try:
        kind, timestamp_ms, leader_epoch, dedup, fields = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, use_list=True)
    except RecordDecodeError:
        raise
    except Exception as exc:  # msgpack raises several types for malformed input
        raise RecordDecodeError(f"log entry is not a duro record: {exc}") from exc
    body_cls = _KIND_BODIES.get(kind)
    if body_cls is None:
        raise RecordDecodeError(f"unknown record kind {kind}; expected one of {sorted(_KIND_BODIES)}")
    envelope = Envelope(timestamp_ms, leader_epoch, (dedup[0], dedup[1]) if dedup else None)
    return Record(envelope, _from_fields(body_cls, fields))


def pack_struct(value: Any) -> bytes:
    """Encode a dataclass whose fields are plain values or nested record types (for stored rows)."""
    return msgpack.packb([_to_wire(getattr(value, name)) for name in _field_names(type(value))], use_bin_type=True)


def unpack_struct(cls: type, data: bytes, enum_fields: dict[str, type[enum.Enum]] | None = None) -> Any:
    """Inverse of `pack_struct`; `enum_fields` names fields to convert back to enums."""
    items = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, use_list=True)
    return _from_fields(cls, items, enum_fields)
