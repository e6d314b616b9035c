"""Log records: every fact a partition applies, as frozen dataclasses, with their msgpack codec.

A record is an `Envelope` (who wrote it, when, and its dedup tag) around one
body. Record kinds are numbered in `RecordKind`; a number once assigned is never
changed or reused, and new fields are appended with a default so that old
records still decode (stored formats only grow).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
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
    PAUSE = 14
    PURGE_JOURNAL = 15
    RESTART_AS_NEW = 16
    PATCH_STATE = 17
    COMPLETE_PROMISE = 18


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

    @property
    def path(self) -> str:
        """`Service/handler`, or `Service/key/handler` for a keyed target (Restate's way of naming a target)."""
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str


class OnMaxAttempts(str, enum.Enum):
    """What apply does once an invocation's retries are used up."""

    PAUSE = "pause"  # keep it, paused: an operator resumes or kills it
    KILL = "kill"  # complete it with the last failure


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How apply retries the failed attempts of one invocation: exponential backoff, then pause or kill.

    The policy is chosen where the invocation's `Invoke` is written (the
    node's default, or what the service or handler declared) and travels in
    that record and then in the invocation's status, so apply never reads a
    node setting: replaying the log on a node with other settings gives the
    same delays. These defaults are the node's default policy (declared here
    once; `duro.settings.RetrySettings` takes its defaults from them).
    """

    # Restate's default invocation retry policy (`crates/types/src/config/invocation.rs`): 500 ms doubling to 60 s,
    # 70 attempts in all (the first included), then pause.
    initial_interval_ms: int = 500
    factor: float = 2.0
    max_interval_ms: int = 60_000
    max_attempts: int | None = 70  # attempts in all before `on_max_attempts` (failed attempts, the first included); None: for ever
    on_max_attempts: OnMaxAttempts = OnMaxAttempts.PAUSE

    def delay_ms(self, retry_count: int) -> int:
        """Delay before retry number `retry_count` (1 for the first retry)."""
        assert retry_count >= 1, "retry counts start at 1"
        delay = self.initial_interval_ms * (self.factor ** (retry_count - 1))
        return int(min(delay, self.max_interval_ms))

    def exhausted(self, failed_attempts: int) -> bool:
        """True once `failed_attempts` failures used the policy up."""
        return self.max_attempts is not None and failed_attempts >= self.max_attempts


DEFAULT_RETRY_POLICY = RetryPolicy()
"""The policy of invocations whose records carry none (written before records carried policies)."""


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
    # since 0.2: who started it (the caller's id and target; None from the ingress) and the invocation it restarts
    invoked_by_id: str | None = None
    invoked_by_target: str | None = None
    restarted_from: str | None = None
    retry_policy: RetryPolicy | None = None  # since 0.2; None (older records) means DEFAULT_RETRY_POLICY
    journal_retention_ms: int = 0  # since 0.2: keep the journal this long after completion (at most completion_retention_ms; 0: drop it)
    fail_on_deadlock: bool = False  # since 0.2: a call of this invocation (or its callees) that closes a wait-for cycle fails


@dataclass(frozen=True, slots=True)
class AttemptFrame:
    """One protocol message an SDK sent during an attempt.

    `call_target` annotates Call / OneWayCall commands with the kind of the
    target handler, resolved by the invoker against the registry (None if the
    target is unknown; the call then fails with 404). `call_retry_policy` and
    `call_retention_ms` are the callee's retry policy and completion retention
    (`call_journal_retention_ms` its journal retention),
    resolved by the invoker at the same time, so that apply builds the
    callee's `Invoke` from the log alone.
    """

    message_type: int
    flags: int
    payload: bytes
    call_target: Target | None = None
    call_retry_policy: RetryPolicy | None = None  # since 0.2; None (older records) means DEFAULT_RETRY_POLICY
    call_retention_ms: int | None = None  # since 0.2; None (older records) means the built-in LEGACY_CALL_RETENTION_MS rule
    call_journal_retention_ms: int | None = None  # since 0.2: the callee's journal retention; None (older records): 0


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
    server: str | None = None  # since 0.2: the SDK's x-restate-server header, on the attempt's first record (introspection)


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """An attempt ended without End or Suspension (transport error, Error message, bad status, timeout, cancellation).

    Apply retries it by the invocation's retry policy, unless `terminal`: then
    the invocation completes with `failure` (a message over a size limit,
    which a retry would only send again).
    """

    invocation_id: str
    attempt: int
    failure: Failure
    retry_after_ms: int | None = None  # the deployment's hint (next_retry_delay, Retry-After)
    deployment_id: str | None = None
    protocol_version: int | None = None
    terminal: bool = False  # since 0.2


class TimerKind(enum.IntEnum):
    SLEEP = 1  # complete a Sleep command: ref = completion id
    DELAYED_INVOKE = 2  # start a scheduled invocation
    RETRY = 3  # start the next attempt: ref = attempt number it supersedes
    CLEANUP = 4  # drop a completed invocation after its retention
    JOURNAL_CLEANUP = 5  # since 0.2: drop a completed invocation's journal after the journal retention


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
    # since 0.2: resume on another deployment (paused or suspended invocations only); its protocol range is checked in apply
    deployment_id: str | None = None
    deployment_min_protocol_version: int = 0
    deployment_max_protocol_version: int = 0


@dataclass(frozen=True, slots=True)
class Pause:
    """Pause a running, backing-off or suspended invocation until it is resumed (since 0.2)."""

    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class PurgeJournal:
    """Drop the journal of a completed invocation, keeping its status and outcome (since 0.2)."""

    invocation_id: str
    reply_to: IngressSink | None = None


@dataclass(frozen=True, slots=True)
class RestartAsNew:
    """Start a completed invocation again from its input, as `new_invocation_id` (same partition key; since 0.2)."""

    invocation_id: str
    new_invocation_id: str
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


@dataclass(frozen=True, slots=True)
class PatchState:
    """Replace an object's whole state (`POST /services/{service}/state`; since 0.2).

    Applied when the key is free, else queued in the key's inbox behind the
    invocations already there. With `version`, applied only if the current
    state's version (Restate's: `protocol.state_version`) equals it.
    """

    service: str
    key: str
    state: tuple[tuple[bytes, bytes], ...]
    version: str | None = None
    reply_to: IngressSink | None = None  # since 0.2: hears DONE (applied), CONFLICT (stale version) or ACK (queued)


@dataclass(frozen=True, slots=True)
class CompletePromise:
    """Complete a workflow's durable promise from outside (`POST /services/{service}/promises`; since 0.2).

    Like a `CompletePromise` command of one of the workflow's handlers: the
    outcome is stored and delivered to every `GetPromise` waiting for it. A
    promise completes once: if it already has an outcome nothing changes and
    `reply_to` hears CONFLICT, else DONE.
    """

    service: str
    key: str
    promise: str
    outcome: Outcome
    reply_to: IngressSink | None = None


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
    Pause,
    PurgeJournal,
    RestartAsNew,
    PatchState,
    CompletePromise,
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
    Pause: RecordKind.PAUSE,
    PurgeJournal: RecordKind.PURGE_JOURNAL,
    RestartAsNew: RecordKind.RESTART_AS_NEW,
    PatchState: RecordKind.PATCH_STATE,
    CompletePromise: RecordKind.COMPLETE_PROMISE,
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


class RecordDecodeError(ValueError):
    """A log entry is not a record this version of duro can read."""


Converter = Callable[[Any], Any] | None  # None: the value is already plain (int, str, bytes, ...)
_CODECS: dict[type, tuple[Callable[[Any], list[Any]], Callable[[list[Any]], Any]]] = {}


def _codec(cls: type) -> tuple[Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
    """Encoder (dataclass -> list of plain values) and decoder (list -> dataclass) of `cls`, compiled once from its type hints.

    Nested dataclasses become lists, enums their values, tuples lists; a union
    of dataclasses (a `Sink`) is written [tag, fields...] with the tags of
    `_NESTED_TAGS`. msgpack then packs only plain values. A stored list shorter
    than the class's fields decodes with the defaults of the missing ones (a
    field added later to a record).

    Both are straight-line functions generated for the class (`_compile_codec`):
    decoding sets the slots of a new instance without running the frozen
    dataclass's `__init__` (one `object.__setattr__` per field), which made
    decoding an invocation status about three times faster; a `__post_init__`
    (an invariant check) still runs.
    """
    cached = _CODECS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    encoders = [_encoder_for(hints[f.name]) for f in fields]
    decoders = [_decoder_for(hints[f.name]) for f in fields]
    codec = _compile_codec(cls, fields, encoders, decoders)
    _CODECS[cls] = codec
    return codec


_MISSING_FIELD = object()


def _compile_codec(
    cls: type, fields: tuple[dataclasses.Field[Any], ...], encoders: list[Converter], decoders: list[Converter]
) -> tuple[Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
    """Generate the encoder and the decoder of `cls` as straight-line code (one line per field, no loop, no `__init__`)."""
    names = [f.name for f in fields]
    field_count = len(names)
    slotted = "__slots__" in cls.__dict__
    namespace: dict[str, Any] = {
        "CLS": cls,
        "NEW": object.__new__,
        "FIELD_COUNT": field_count,
        "FILL": functools.partial(_missing_fields, cls, fields),
        "RecordDecodeError": RecordDecodeError,
    }
    encode_items = []
    for index, (name, encoder) in enumerate(zip(names, encoders, strict=True)):
        namespace[f"E{index}"] = encoder
        encode_items.append(f"value.{name}" if encoder is None else f"E{index}(value.{name})")
    decode_lines = []
    for index, (name, decoder) in enumerate(zip(names, decoders, strict=True)):
        namespace[f"D{index}"] = decoder
        raw = f"items[{index}]"
        if isinstance(decoder, type) and issubclass(decoder, enum.Enum):  # the member by a dict lookup instead of Enum.__call__
            namespace[f"M{index}"] = decoder._value2member_map_
            value = f"(None if {raw} is None else M{index}[{raw}])"
        else:
            value = raw if decoder is None else f"(None if {raw} is None else D{index}({raw}))"
        if slotted:
            namespace[f"S{index}"] = cls.__dict__[name].__set__
            decode_lines.append(f"    S{index}(new, {value})")
        else:
            decode_lines.append(f"    a{index} = {value}")
    if slotted:
        build = ["    new = NEW(CLS)", *decode_lines]
        if hasattr(cls, "__post_init__"):
            build.append("    new.__post_init__()")
        build.append("    return new")
    else:
        build = [*decode_lines, f"    return CLS({', '.join(f'a{i}' for i in range(field_count))})"]
    source = "\n".join(
        [
            "def encode(value):",
            f"    return [{', '.join(encode_items)}]",
            "def decode(items):",
            "    if len(items) != FIELD_COUNT:",
            "        if len(items) > FIELD_COUNT:",
            "            raise RecordDecodeError(f'" + cls.__name__ + " has {FIELD_COUNT} fields, the stored value has {len(items)}')",
            "        items = FILL(items)",
            *build,
        ]
    )
    exec(compile(source, f"<codec of {cls.__qualname__}>", "exec"), namespace)  # code generated from the class's own fields
    return namespace["encode"], namespace["decode"]


def _missing_fields(cls: type, fields: tuple[dataclasses.Field[Any], ...], items: list[Any]) -> list[Any]:
    """`items` (a stored value written before the class had its later fields) completed with those fields' defaults."""
    completed = list(items)
    for field_ in fields[len(items) :]:
        if field_.default is not dataclasses.MISSING:
            completed.append(field_.default)
        elif field_.default_factory is not dataclasses.MISSING:
            completed.append(field_.default_factory())
        else:
            raise RecordDecodeError(f"{cls.__name__} needs its field {field_.name!r}, the stored value has {len(items)} fields")
    return completed


def compiled_replace(cls: type) -> Callable[..., Any]:
    """`replace(instance, **changes)` for a frozen slotted dataclass: like `dataclasses.replace`, without running `__init__`.

    Generated once per class (one line per field); an unknown field name is a TypeError.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {"CLS": cls, "NEW": object.__new__, "UNCHANGED": _MISSING_FIELD}
    lines = [f"def replace(self, *, {', '.join(f'{name}=UNCHANGED' for name in names)}):", "    new = NEW(CLS)"]
    for index, name in enumerate(names):
        namespace[f"S{index}"] = cls.__dict__[name].__set__
        lines.append(f"    S{index}(new, self.{name} if {name} is UNCHANGED else {name})")
    lines.append("    return new")
    exec(compile("\n".join(lines), f"<replace of {cls.__qualname__}>", "exec"), namespace)
    replace: Callable[..., Any] = namespace["replace"]
    return replace


def _union_members(tp: Any) -> list[Any] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return None


def _encoder_for(tp: Any) -> Converter:
    members = _union_members(tp)
    if members is not None:
        if len(members) == 1:
            inner = _encoder_for(members[0])
            return None if inner is None else (lambda v: None if v is None else inner(v))
        return _tagged_encoder(members)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        item_encoders = [_encoder_for(a) for a in args if a is not Ellipsis]
        if len(args) == 2 and args[1] is Ellipsis:
            item = item_encoders[0]
            return list if item is None else (lambda v: [item(x) for x in v])
        if all(e is None for e in item_encoders):
            return list
        return lambda v: [x if e is None else e(x) for e, x in zip(item_encoders, v, strict=False)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return lambda v: v.value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _codec(tp)[0]
    return None


def _decoder_for(tp: Any) -> Converter:
    members = _union_members(tp)
    if members is not None:
        if len(members) == 1:
            return _decoder_for(members[0])
        return _tagged_decoder(members)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        item_decoders = [_decoder_for(a) for a in args if a is not Ellipsis]
        if len(args) == 2 and args[1] is Ellipsis:
            item = item_decoders[0]
            return tuple if item is None else (lambda v: tuple([item(x) for x in v]))
        if all(d is None for d in item_decoders):
            return tuple
        return lambda v: tuple([x if d is None else d(x) for d, x in zip(item_decoders, v, strict=False)])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _codec(tp)[1]
    return None


def _tagged_encoder(members: list[Any]) -> Callable[[Any], Any]:
    def encode(value: Any) -> Any:
        if value is None:
            return None
        cls = type(value)
        return [_NESTED_TAGS[cls], *_codec(cls)[0](value)]

    return encode


def _tagged_decoder(members: list[Any]) -> Callable[[Any], Any]:
    allowed = {_NESTED_TAGS[m]: m for m in members}

    def decode(items: list[Any]) -> Any:
        cls = allowed.get(items[0])
        if cls is None:
            raise RecordDecodeError(f"tag {items[0]} is none of {sorted(allowed)}")
        return _codec(cls)[1](items[1:])

    return decode


def encode_record(record: Record) -> bytes:
    """Encode a record as msgpack: [kind, timestamp_ms, leader_epoch, dedup, [body fields...]]."""
    body = record.body
    kind = _BODY_KINDS[type(body)]
    env = record.envelope
    fields = _codec(type(body))[0](body)
    return msgpack.packb([int(kind), env.timestamp_ms, env.leader_epoch, list(env.dedup) if env.dedup else None, fields], use_bin_type=True)


def decode_record(data: bytes) -> Record:
    """Decode bytes written by `encode_record`; raise RecordDecodeError naming what is wrong."""
    try:
        kind, timestamp_ms, leader_epoch, dedup, fields = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise RecordDecodeError(f"log entry is not a duro record: {exc}") from exc
    body_cls = _KIND_BODIES.get(kind)
    if body_cls is None:
        raise RecordDecodeError(f"unknown record kind {kind}; expected one of {sorted(_KIND_BODIES)}")
    envelope = Envelope(timestamp_ms, leader_epoch, (dedup[0], dedup[1]) if dedup else None)
    try:
        body = _codec(body_cls)[1](fields)
    except RecordDecodeError:
        raise
    except Exception as exc:
        raise RecordDecodeError(f"{body_cls.__name__} record does not decode: {exc!r}") from exc
    return Record(envelope, body)


def pack_struct(value: Any) -> bytes:
    """Encode a dataclass whose fields are plain values, enums, tuples or other such dataclasses (for stored rows)."""
    return msgpack.packb(_codec(type(value))[0](value), use_bin_type=True)


def unpack_struct(cls: type, data: bytes, enum_fields: dict[str, type[enum.Enum]] | None = None) -> Any:
    """Inverse of `pack_struct` (enum fields are converted from the type hints; `enum_fields` is accepted for callers that name them)."""
    return _codec(cls)[1](msgpack.unpackb(data, raw=False))
