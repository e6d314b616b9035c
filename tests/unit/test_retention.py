"""Unit tests of retention: Restate's rule (`protocol.retention`) and how apply keeps and removes completed invocations by durable timers."""

from __future__ import annotations

import msgpack
import pytest

from partition_worker import keys
from partition_worker.actions import ReplyToIngress, ScheduleTimer, SendOutbox
from partition_worker.status import Phase
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from protocol.retention import DAY_MS, InvocationRetention, RetentionPolicy
from protocol.routing import keyed_or_random_id, workflow_invocation_id
from tests.unit.test_state_machine import COUNTER_ADD, GREETER, SIGNUP_RUN, Harness, of_type, output
from wal.records import (
    Attach,
    AttemptEvents,
    AttemptFrame,
    IngressSink,
    Invoke,
    Purge,
    TimerFired,
    TimerKind,
)

MINUTE_MS = 60_000


# ---------------------------------------------------------------- the rule


def test_defaults_are_restates_24_hours() -> None:
    policy = RetentionPolicy()
    assert (policy.journal_ms, policy.idempotency_ms, policy.workflow_completion_ms) == (DAY_MS, DAY_MS, DAY_MS)


@pytest.mark.parametrize(
    ("journal_ms", "is_workflow_run", "has_key", "expected"),
    [
        (MINUTE_MS, False, False, InvocationRetention(MINUTE_MS, MINUTE_MS)),  # plain: the journal retention for both
        (0, False, False, InvocationRetention(0, 0)),  # no journal retention: nothing is kept
        (MINUTE_MS, False, True, InvocationRetention(2 * DAY_MS, MINUTE_MS)),  # idempotency key: outcome for the idempotency retention
        (3 * DAY_MS, False, True, InvocationRetention(2 * DAY_MS, 2 * DAY_MS)),  # ... and the journal no longer than the outcome
        (0, True, False, InvocationRetention(5 * DAY_MS, 0)),  # workflow run: the workflow completion retention
        (MINUTE_MS, True, True, InvocationRetention(5 * DAY_MS, MINUTE_MS)),
    ],
)
def test_invocation_retention_follows_restates_compute_retention(
    journal_ms: int, is_workflow_run: bool, has_key: bool, expected: InvocationRetention
) -> None:
    policy = RetentionPolicy(journal_ms=journal_ms, idempotency_ms=2 * DAY_MS, workflow_completion_ms=5 * DAY_MS)
    assert policy.for_invocation(is_workflow_run=is_workflow_run, has_idempotency_key=has_key) == expected


def test_declared_retention_overrides_the_defaults_and_zero_is_a_declaration() -> None:
    resolved = RetentionPolicy().resolve(journal_ms=0, idempotency_ms=None, workflow_completion_ms=MINUTE_MS)
    assert resolved == RetentionPolicy(journal_ms=0, idempotency_ms=DAY_MS, workflow_completion_ms=MINUTE_MS)


# ---------------------------------------------------------------- apply


def _invoke(target: object = GREETER, *, completion_ms: int, journal_ms: int, sink: IngressSink | None = None) -> Invoke:
    return Invoke(
        keyed_or_random_id(getattr(target, "key", None)),
        target,  # type: ignore[arg-type]
        b"1",
        response_sink=sink,
        completion_retention_ms=completion_ms,
        journal_retention_ms=journal_ms,
    )


def _run_to_completion(h: Harness, record: Invoke, value: bytes) -> list[object]:
    h.apply(record)
    return h.send(record.invocation_id, 1, output(value), pb.EndMessage())


def _timers(h: Harness) -> list[tuple[int, str, int, int]]:
    return [keys.parse_timer_key(row) for row, _ in h.store.scan(keys.TIMER_PREFIX)]


def _rows_of(h: Harness, invocation_id: str) -> list[bytes]:
    """Every stored row that names the invocation (status, journal, notified markers, running index, timers)."""
    needle = invocation_id.encode()
    return [row for row in h.store.rows if needle in row]


def test_a_completed_invocation_keeps_outcome_and_journal_for_the_journal_retention_then_goes() -> None:
    h = Harness()
    record = _invoke(completion_ms=MINUTE_MS, journal_ms=MINUTE_MS)
    _run_to_completion(h, record, b"done")
    completed_at_ms = h.now_ms
    status = h.status(record.invocation_id)
    assert status is not None and status.phase is Phase.COMPLETED and status.outcome.value == b"done"  # type: ignore[union-attr]
    kinds = [msgpack.unpackb(raw)[0] for _, raw in h.store.scan(keys.journal_prefix(record.invocation_id))]
    assert kinds == [MessageType.INPUT_COMMAND, MessageType.OUTPUT_COMMAND] and status.journal_length == 2, "the journal stays"
    assert _timers(h) == [(completed_at_ms + MINUTE_MS, record.invocation_id, int(TimerKind.CLEANUP), 0)]
    h.now_ms += MINUTE_MS
    h.apply(TimerFired(completed_at_ms + MINUTE_MS, record.invocation_id, TimerKind.CLEANUP))
    assert _rows_of(h, record.invocation_id) == [], "nothing of the invocation is left"


def test_a_journal_retention_shorter_than_the_outcome_removes_the_journal_first() -> None:
    h = Harness()
    record = _invoke(completion_ms=10 * MINUTE_MS, journal_ms=MINUTE_MS)
    _run_to_completion(h, record, b"done")
    done_ms = h.now_ms
    assert sorted(_timers(h)) == [
        (done_ms + MINUTE_MS, record.invocation_id, int(TimerKind.JOURNAL_CLEANUP), 0),
        (done_ms + 10 * MINUTE_MS, record.invocation_id, int(TimerKind.CLEANUP), 0),
    ]
    h.apply(TimerFired(done_ms + MINUTE_MS, record.invocation_id, TimerKind.JOURNAL_CLEANUP))
    assert list(h.store.scan(keys.journal_prefix(record.invocation_id))) == []
    status = h.status(record.invocation_id)
    assert status is not None and status.journal_length == 0 and status.outcome.value == b"done"  # type: ignore[union-attr]
    h.apply(TimerFired(done_ms + 10 * MINUTE_MS, record.invocation_id, TimerKind.CLEANUP))
    assert _rows_of(h, record.invocation_id) == []


def test_no_journal_retention_drops_the_journal_at_completion_and_keeps_the_outcome() -> None:
    h = Harness()
    record = _invoke(COUNTER_ADD, completion_ms=DAY_MS, journal_ms=0)
    _run_to_completion(h, record, b"done")
    assert list(h.store.scan(keys.journal_prefix(record.invocation_id))) == []
    assert [t[2] for t in _timers(h)] == [int(TimerKind.CLEANUP)]


def test_no_retention_removes_everything_at_completion() -> None:
    h = Harness()
    record = _invoke(completion_ms=0, journal_ms=0)
    _run_to_completion(h, record, b"done")
    assert _rows_of(h, record.invocation_id) == []


def test_idempotency_expires_is_completion_time_plus_retention_also_for_a_later_attach() -> None:
    h = Harness()
    record = _invoke(completion_ms=DAY_MS, journal_ms=0, sink=IngressSink(1, 1))
    h.apply(record)
    (reply,) = of_type(h.send(record.invocation_id, 1, output(b"x"), pb.EndMessage()), ReplyToIngress)
    completed_at_ms = h.now_ms
    assert reply.reply.completion_expires_at_ms == completed_at_ms + DAY_MS
    h.now_ms += 5 * MINUTE_MS
    (later,) = of_type(h.apply(Attach(record.invocation_id, IngressSink(1, 2))), ReplyToIngress)
    assert later.reply.completion_expires_at_ms == completed_at_ms + DAY_MS


def test_purge_removes_the_retention_timers_so_a_reused_id_keeps_its_own_retention() -> None:
    h = Harness()
    first = _invoke(completion_ms=DAY_MS, journal_ms=MINUTE_MS)
    _run_to_completion(h, first, b"1")
    first_done_ms = h.now_ms
    h.apply(Purge(first.invocation_id))
    assert _rows_of(h, first.invocation_id) == [], "status, journal and both retention timers are gone"
    h.now_ms += 1000
    again = Invoke(first.invocation_id, GREETER, b"2", completion_retention_ms=DAY_MS, journal_retention_ms=DAY_MS)
    _run_to_completion(h, again, b"2")
    # A timer the first invocation left would not fire this one early: its time is not this one's expiry.
    h.apply(TimerFired(first_done_ms + DAY_MS, first.invocation_id, TimerKind.CLEANUP))
    status = h.status(first.invocation_id)
    assert status is not None and status.outcome.value == b"2"  # type: ignore[union-attr]


def test_workflow_retention_removes_the_run_with_its_state_and_promises() -> None:
    h = Harness()
    run_id = workflow_invocation_id("Signup", "u1")
    h.apply(Invoke(run_id, SIGNUP_RUN, b"", completion_retention_ms=MINUTE_MS, journal_retention_ms=0))
    set_state = pb.SetStateCommandMessage(key=b"s")
    set_state.value.content = b"v"
    h.send(run_id, 1, set_state, output(b"ok"), pb.EndMessage())
    assert h.state("Signup", "u1", b"s") == b"v", "kept while the run's outcome is kept"
    h.apply(TimerFired(h.now_ms + MINUTE_MS, run_id, TimerKind.CLEANUP))
    assert h.state("Signup", "u1", b"s") is None
    assert _rows_of(h, run_id) == []


def _callee_invoke(call_retention_ms: int | None, call_journal_retention_ms: int | None) -> Invoke:
    """The Invoke apply sends for a handler's call annotated with these retentions (None: a record from before they were)."""
    h = Harness()
    caller = _invoke(completion_ms=0, journal_ms=0)
    h.apply(caller)
    call = pb.CallCommandMessage(
        service_name="Counter", handler_name="add", key="k", result_completion_id=1, invocation_id_notification_idx=2
    )
    frame = AttemptFrame(
        int(MessageType.CALL_COMMAND),
        0,
        call.SerializeToString(),
        COUNTER_ADD,
        call_retention_ms=call_retention_ms,
        call_journal_retention_ms=call_journal_retention_ms,
    )
    actions = h.apply(AttemptEvents(caller.invocation_id, 1, (frame,), "dp_1", 6))
    (sent,) = [a.body for a in of_type(actions, SendOutbox) if isinstance(a.body, Invoke)]
    return sent


def test_a_call_carries_the_retention_the_invoker_resolved() -> None:
    sent = _callee_invoke(7 * MINUTE_MS, 3 * MINUTE_MS)
    assert (sent.completion_retention_ms, sent.journal_retention_ms) == (7 * MINUTE_MS, 3 * MINUTE_MS)


def test_a_call_in_a_record_written_before_retention_travelled_gets_the_old_fixed_defaults() -> None:
    sent = _callee_invoke(None, None)
    assert (sent.completion_retention_ms, sent.journal_retention_ms) == (DAY_MS // 24, 0)


def test_retention_timers_are_announced_as_schedule_timer_actions() -> None:
    h = Harness()
    record = _invoke(completion_ms=MINUTE_MS, journal_ms=MINUTE_MS)
    actions = _run_to_completion(h, record, b"done")
    assert [(a.timer_kind, a.fire_at_ms) for a in of_type(actions, ScheduleTimer)] == [(int(TimerKind.CLEANUP), h.now_ms + MINUTE_MS)]
