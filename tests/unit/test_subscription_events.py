"""Kafka records become Invoke records: target, body, headers, deterministic ids, dedup tags, problems; and the state machine drops a redelivered event."""

from __future__ import annotations

import base64

from ingress.subscription_events import (
    MAX_KEYS_REMEMBERED,
    EventRecord,
    EventTarget,
    PartitionEvents,
    RecordProblem,
    build_event,
    event_headers,
    producer_of,
)
from partition_worker import keys
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.status import InvocationStatus
from partition_worker.store import MemoryPartitionStore, Transaction
from protocol.ids import InvocationId
from protocol.retention import InvocationRetention
from protocol.routing import partition_key_for_key, workflow_invocation_id
from wal.records import HandlerKind, IngressSink, Invoke, ServiceType, decode_record

CART = EventTarget(
    subscription_id="sub_1abc",
    group_id="group-1",
    service="ShoppingCart",
    handler="add_item",
    service_type=ServiceType.VIRTUAL_OBJECT,
    handler_kind=HandlerKind.EXCLUSIVE,
    expects_json=True,
    retention=InvocationRetention(60_000, 60_000),
    max_record_bytes=100,
)
PLAIN = EventTarget("sub_1abc", "group-1", "Mailer", "send", ServiceType.SERVICE, None, False, InvocationRetention(0, 0), 100)
SIGNUP = EventTarget(
    "sub_1abc", "group-1", "Signup", "run", ServiceType.WORKFLOW, HandlerKind.WORKFLOW, True, InvocationRetention(0, 0), 100
)


def record(offset: int = 7, key: bytes | None = b"ada", value: bytes | None = b'{"price": 3}', **extra: object) -> EventRecord:
    fields: dict[str, object] = {"topic": "carts", "partition": 2, "offset": offset, "timestamp_ms": 1_700_000_000_123}
    fields.update(key=key, value=value, **extra)
    return EventRecord(**fields)  # type: ignore[arg-type]


def invoke_of(entry: bytes | None) -> tuple[Invoke, tuple[str, int] | None]:
    assert entry is not None
    decoded = decode_record(entry)
    assert isinstance(decoded.body, Invoke)
    return decoded.body, decoded.envelope.dedup


def test_an_object_event_targets_the_record_key_with_the_value_as_body_and_restates_headers() -> None:
    sink = IngressSink(1, 42)
    event = build_event(CART, record(headers=(("traceparent", b"00-ab-cd-01"), ("kafka.offset", b"forged"))), sink, 5)
    invoke, dedup = invoke_of(event.entry)
    assert (invoke.target.service, invoke.target.handler, invoke.target.key) == ("ShoppingCart", "add_item", "ada")
    assert invoke.body == b'{"price": 3}'
    assert invoke.response_sink == sink and invoke.completion_retention_ms == 60_000 and invoke.journal_retention_ms == 60_000
    assert invoke.invoked_by_id == "sub_1abc"
    assert dict(invoke.headers) == {
        "kafka.offset": "7",
        "kafka.topic": "carts",
        "kafka.partition": "2",
        "kafka.timestamp": "1700000000123",
        "restate.subscription.id": "sub_1abc",
        "kafka.key": base64.urlsafe_b64encode(b"ada").decode(),
        "traceparent": "00-ab-cd-01",
    }, "a record header never replaces one of Restate's event headers"
    assert dedup == (producer_of("group-1", "carts", 2), 7)
    assert event.partition_key == partition_key_for_key("ada") == InvocationId.parse(invoke.invocation_id).partition_key
    assert event.problem is None


def test_the_same_event_always_gets_the_same_invocation_id_and_another_offset_another() -> None:
    first = build_event(CART, record(offset=7), None, 1).invocation_id
    assert build_event(CART, record(offset=7), IngressSink(2, 9), 99).invocation_id == first
    assert build_event(CART, record(offset=8), None, 1).invocation_id != first


def test_a_plain_service_keeps_one_kafka_partition_on_one_duro_partition() -> None:
    keys_seen = {build_event(PLAIN, record(offset=o, key=f"k{o}".encode()), None, 1).partition_key for o in range(20)}
    assert len(keys_seen) == 1
    other_partition = build_event(PLAIN, EventRecord("carts", 3, 0, None, None, b"x"), None, 1).partition_key
    assert other_partition not in keys_seen
    invoke, _ = invoke_of(build_event(PLAIN, record(key=b"\xff"), None, 1).entry)
    assert invoke.target.key is None, "a plain service has no key, so any record key is fine"


def test_a_workflow_run_event_has_the_runs_id_and_a_missing_key_is_the_empty_key() -> None:
    event = build_event(SIGNUP, record(key=b"u1"), None, 1)
    assert event.invocation_id == workflow_invocation_id("Signup", "u1")
    invoke, _ = invoke_of(build_event(CART, record(key=None), None, 1).entry)
    assert invoke.target.key == "" and "kafka.key" not in dict(invoke.headers)


def test_problems_skip_undecodable_keys_and_oversized_values_and_flag_bad_json() -> None:
    bad_key = build_event(CART, record(key=b"\xff\xfe"), None, 1)
    assert (bad_key.entry, bad_key.problem) == (None, RecordProblem.KEY_NOT_UTF8)
    too_large = build_event(CART, record(value=b"1" * 101), None, 1)
    assert (too_large.entry, too_large.problem) == (None, RecordProblem.TOO_LARGE)
    bad_json = build_event(CART, record(value=b"not json {"), None, 1)
    assert bad_json.problem is RecordProblem.INVALID_JSON and bad_json.entry is not None, "delivered anyway, as Restate does"
    assert build_event(PLAIN, record(value=b"not json {"), None, 1).problem is None, "a handler that takes bytes takes anything"


def test_a_partitions_builder_makes_each_record_exactly_what_build_event_makes() -> None:
    keys_ = [b"ada", b"bob", None, b"\xff\xfe", b""]
    for target in (CART, PLAIN, SIGNUP):
        events = PartitionEvents(target, "carts", 2)
        for offset in range(40):
            one = record(offset=offset, key=keys_[offset % len(keys_)], value=b"1" * (offset % 3) * 60 or None)
            sink = IngressSink(1, offset)
            built = events.build(one.offset, one.timestamp_ms, one.key, one.value, one.headers, sink, 5)
            assert built == build_event(target, one, sink, 5), (target.service, offset)


def test_a_partitions_builder_forgets_its_keys_past_its_bound_and_still_builds_the_same() -> None:
    events = PartitionEvents(CART, "carts", 2)
    for index in range(MAX_KEYS_REMEMBERED + 3):
        events.build(index, None, f"k{index}".encode(), b"1", (), None, 1)
    assert len(events._keys) <= MAX_KEYS_REMEMBERED
    again = events.build(3, None, b"k3", b"1", (), None, 1)
    assert again == build_event(CART, EventRecord("carts", 2, 3, None, b"k3", b"1"), None, 1)


def test_headers_skip_values_that_are_not_utf8_and_a_missing_timestamp() -> None:
    headers = dict(event_headers("sub_1x", EventRecord("t", 0, 3, None, None, b"", (("bin", b"\xff"), ("ok", b"yes")))))
    assert "bin" not in headers and headers["ok"] == "yes" and "kafka.timestamp" not in headers


def test_the_partition_state_machine_drops_an_event_delivered_again() -> None:
    store = MemoryPartitionStore()
    machine = StateMachine(StateMachineConfig(partition=0))

    def apply(entry: bytes | None) -> list[object]:
        assert entry is not None
        txn = Transaction(store)
        actions = machine.apply(txn, decode_record(entry))
        txn.commit()
        return list(actions)

    def statuses() -> int:
        return sum(1 for _ in store.scan(keys.INVOCATION_PREFIX))

    first, second = build_event(CART, record(offset=7), None, 1), build_event(CART, record(offset=8), None, 1)
    assert apply(first.entry), "the first event of the key runs at once"
    apply(second.entry)  # queued behind it in the key's inbox
    assert statuses() == 2
    assert apply(build_event(CART, record(offset=7), IngressSink(3, 1), 2).entry) == [], "a redelivered offset starts nothing"
    apply(build_event(CART, record(offset=8), None, 2).entry)
    assert statuses() == 2
    raw = store.get(keys.invocation_key(first.invocation_id))
    assert raw is not None and InvocationStatus.decode(raw).response_sinks == (), "the duplicate's sink was not attached"
    apply(build_event(CART, record(offset=9), None, 3).entry)
    assert statuses() == 3, "the next offset is new"
