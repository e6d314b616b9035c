"""Apply depends only on the log: retry policies and retentions travel in records, and purge leaves nothing behind.

Each test feeds records to the real state machine on the in-memory store; a
replay test applies one log on two nodes configured differently and compares
every row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_state_machine import COUNTER_ADD, GREETER, SIGNUP_RUN, Harness, invoke, of_type, output

from duro.node import Node
from duro.settings import DuroSettings
from partition_worker import keys
from partition_worker.actions import InvokeAttempt, ReplyToIngress, ScheduleTimer, SendOutbox
from partition_worker.state_machine import StateMachine
from partition_worker.status import Phase
from partition_worker.store import MemoryPartitionStore, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from protocol.routing import idempotent_invocation_id
from wal.records import (
    AttemptEvents,
    AttemptFailed,
    AttemptFrame,
    Envelope,
    Failure,
    IngressSink,
    Invoke,
    Kill,
    OnMaxAttempts,
    Purge,
    Record,
    RecordBody,
    RetryPolicy,
    TimerFired,
    TimerKind,
)
from wal.replies import ReplyKind

SLOW_POLICY = RetryPolicy(initial_interval_ms=7, factor=3.0, max_interval_ms=100, max_attempts=3, on_max_attempts=OnMaxAttempts.PAUSE)
KILL_POLICY = RetryPolicy(initial_interval_ms=5, factor=2.0, max_interval_ms=100, max_attempts=2, on_max_attempts=OnMaxAttempts.KILL)


def timers_of(h: Harness, invocation_id: str) -> list[tuple[int, str, int, int]]:
    return [keys.parse_timer_key(row) for row, _ in h.store.scan(keys.TIMER_PREFIX) if keys.parse_timer_key(row)[1] == invocation_id]


def test_the_retry_delays_come_from_the_policy_in_the_invoke_record() -> None:
    h = Harness()
    record = Invoke("inv_1" + "1" * 33, GREETER, b"1", retry_policy=SLOW_POLICY)
    h.apply(record)
    fired_at = []
    for attempt in (1, 2):
        actions = h.apply(AttemptFailed(record.invocation_id, attempt, Failure(500, "boom")))
        (timer,) = of_type(actions, ScheduleTimer)
        fired_at.append(timer.fire_at_ms - h.now_ms)
        h.apply(TimerFired(timer.fire_at_ms, record.invocation_id, TimerKind.RETRY, attempt))
    assert fired_at == [7, 21]
    h.apply(AttemptFailed(record.invocation_id, 3, Failure(500, "boom")))
    status = h.status(record.invocation_id)
    assert status is not None and status.phase is Phase.PAUSED and status.retry_count == 3


def test_on_max_attempts_kill_completes_with_the_last_failure_and_answers_the_caller() -> None:
    h = Harness()
    record = Invoke("inv_1" + "2" * 33, GREETER, b"1", response_sink=IngressSink(1, 4), retry_policy=KILL_POLICY)
    h.apply(record)
    (timer,) = of_type(h.apply(AttemptFailed(record.invocation_id, 1, Failure(500, "first"))), ScheduleTimer)
    h.apply(TimerFired(timer.fire_at_ms, record.invocation_id, TimerKind.RETRY, 1))
    actions = h.apply(AttemptFailed(record.invocation_id, 2, Failure(503, "second")))
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.outcome.failure == Failure(503, "second")
    assert h.status(record.invocation_id) is None  # no retention: completed and dropped
    assert timers_of(h, record.invocation_id) == []


def test_a_terminal_attempt_failure_completes_the_invocation_without_retrying() -> None:
    h = Harness()
    record = Invoke("inv_1" + "3" * 33, GREETER, b"1", response_sink=IngressSink(1, 9))
    h.apply(record)
    failure = Failure(500, "message of 60000000 bytes exceeds max_frame_bytes=33554432")
    actions = h.apply(AttemptFailed(record.invocation_id, 1, failure, terminal=True))
    assert not of_type(actions, ScheduleTimer) and not of_type(actions, InvokeAttempt)
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.outcome.failure == failure


def test_a_call_takes_the_policy_and_retention_the_invoker_wrote_into_its_frame() -> None:
    h = Harness()
    caller = invoke(GREETER)
    h.apply(caller)
    call = pb.CallCommandMessage(service_name="Counter", handler_name="add", key="bob", parameter=b"1")
    call.result_completion_id = 1
    call.invocation_id_notification_idx = 2
    frame = AttemptFrame(int(MessageType.CALL_COMMAND), 0, call.SerializeToString(), COUNTER_ADD, SLOW_POLICY, 1234)
    actions = h.apply(AttemptEvents(caller.invocation_id, 1, (frame,), "dp_1", 6))
    (send,) = of_type(actions, SendOutbox)
    assert isinstance(send.body, Invoke)
    assert send.body.retry_policy == SLOW_POLICY and send.body.completion_retention_ms == 1234


def test_purge_removes_the_cleanup_timer_so_a_new_invocation_with_the_same_id_keeps_its_retention() -> None:
    h = Harness()
    invocation_id = idempotent_invocation_id("Greeter", None, "greet", "key-1")
    first = Invoke(invocation_id, GREETER, b"1", idempotency_key="key-1", completion_retention_ms=1_000)
    h.apply(first)
    h.send(invocation_id, 1, output(b"one"), pb.EndMessage())
    (old_cleanup,) = timers_of(h, invocation_id)
    (reply,) = of_type(h.apply(Purge(invocation_id, IngressSink(1, 1))), ReplyToIngress)
    assert reply.reply.kind is ReplyKind.ACK
    assert h.status(invocation_id) is None and timers_of(h, invocation_id) == []
    h.now_ms += 500
    h.apply(Invoke(invocation_id, GREETER, b"2", idempotency_key="key-1", completion_retention_ms=1_000))
    h.send(invocation_id, 1, output(b"two"), pb.EndMessage())
    # The first incarnation's cleanup time passes: the second is untouched, even if the old timer had been left behind.
    h.apply(TimerFired(old_cleanup[0], invocation_id, TimerKind.CLEANUP, 0))
    status = h.status(invocation_id)
    assert status is not None and status.outcome is not None and status.outcome.value == b"two"
    (cleanup,) = timers_of(h, invocation_id)
    assert cleanup[0] == old_cleanup[0] + 500


def test_a_cleanup_timer_left_by_an_older_purge_does_not_expire_a_later_invocation() -> None:
    """Logs written before #14 may hold such a timer row: apply checks the expiry it names."""
    h = Harness()
    record = Invoke("inv_1" + "4" * 33, GREETER, b"1", completion_retention_ms=1_000)
    h.apply(record)
    h.send(record.invocation_id, 1, output(b"x"), pb.EndMessage())
    stale_at = h.now_ms + 10
    h.store.write({keys.timer_key(stale_at, record.invocation_id, int(TimerKind.CLEANUP), 0): b""})
    h.apply(TimerFired(stale_at, record.invocation_id, TimerKind.CLEANUP, 0))
    assert h.status(record.invocation_id) is not None


def test_purging_a_workflow_drops_its_state_promises_and_timers() -> None:
    h = Harness()
    record = Invoke("inv_1" + "5" * 33, SIGNUP_RUN, b"1", completion_retention_ms=5_000)
    h.apply(record)
    set_state = pb.SetStateCommandMessage(key=b"k")
    set_state.value.content = b"v"
    h.send(record.invocation_id, 1, set_state, output(b"done"), pb.EndMessage())
    assert h.state("Signup", "u1", b"k") == b"v"
    h.apply(Purge(record.invocation_id))
    assert h.state("Signup", "u1", b"k") is None
    assert timers_of(h, record.invocation_id) == [] and h.status(record.invocation_id) is None


@pytest.mark.parametrize("phase", ["sleeping", "scheduled", "backing_off"])
def test_killing_an_invocation_drops_every_timer_it_still_had(phase: str) -> None:
    h = Harness()
    invocation_id = "inv_1" + "6" * 33
    execute_at = h.now_ms + 60_000 if phase == "scheduled" else None
    h.apply(Invoke(invocation_id, COUNTER_ADD, b"1", execute_at_ms=execute_at))
    if phase == "sleeping":
        sleep = pb.SleepCommandMessage(wake_up_time=h.now_ms + 5_000, result_completion_id=1)
        h.send(invocation_id, 1, sleep, pb.SuspensionMessage(waiting_completions=[1]))
    elif phase == "backing_off":
        h.apply(AttemptFailed(invocation_id, 1, Failure(500, "boom")))
    assert len(timers_of(h, invocation_id)) == 1
    h.apply(Kill(invocation_id))
    assert timers_of(h, invocation_id) == []


def test_a_fired_sleep_is_no_longer_pending() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    wake_at = h.now_ms + 100
    h.send(record.invocation_id, 1, pb.SleepCommandMessage(wake_up_time=wake_at, result_completion_id=1))
    status = h.status(record.invocation_id)
    assert status is not None and status.pending_sleeps == ((wake_at, 1),)
    h.apply(TimerFired(wake_at, record.invocation_id, TimerKind.SLEEP, 1))
    status = h.status(record.invocation_id)
    assert status is not None and status.pending_sleeps == ()


def _log_with_failures_calls_and_completions() -> list[Record]:
    """Records as a node writes them: invokes with policies, failed attempts, a call annotated by the invoker, outputs."""
    records: list[Record] = []
    now = 2_000_000
    bodies: list[RecordBody] = []
    for i in range(6):
        invocation_id = f"inv_1{i:011d}{'9' * 22}"
        bodies.append(Invoke(invocation_id, COUNTER_ADD, b"1", completion_retention_ms=60_000, retry_policy=SLOW_POLICY))
        bodies.append(AttemptFailed(invocation_id, 1, Failure(500, "boom")))
    call = pb.CallCommandMessage(service_name="Greeter", handler_name="greet", parameter=b"x")
    call.result_completion_id = 1
    call.invocation_id_notification_idx = 2
    caller = f"inv_1{0:011d}{'8' * 22}"
    bodies.append(Invoke(caller, GREETER, b"1", retry_policy=KILL_POLICY))
    bodies.append(
        AttemptEvents(caller, 1, (AttemptFrame(int(MessageType.CALL_COMMAND), 0, call.SerializeToString(), GREETER, SLOW_POLICY, 777),))
    )
    out = output(b"done")
    bodies.append(AttemptEvents(caller, 1, (AttemptFrame(int(MessageType.OUTPUT_COMMAND), 0, out.SerializeToString()),)))
    bodies.append(AttemptEvents(caller, 1, (AttemptFrame(int(MessageType.END), 0, pb.EndMessage().SerializeToString()),)))
    for body in bodies:
        now += 3
        records.append(Record(Envelope(now), body))
    return records


def _replay(machine: StateMachine, records: list[Record]) -> dict[bytes, bytes]:
    store = MemoryPartitionStore()
    for record in records:
        txn = Transaction(store)
        machine.apply(txn, record)
        txn.commit()
    return dict(store.rows)


def test_one_log_replayed_on_two_nodes_with_different_settings_gives_the_same_rows(tmp_path: Path) -> None:
    records = _log_with_failures_calls_and_completions()
    node_a = Node(DuroSettings(data_dir=tmp_path / "a"))
    node_b = Node(
        DuroSettings(
            data_dir=tmp_path / "b",
            retry={"initial_interval_ms": 999, "factor": 1.5, "max_interval_ms": 5_000, "max_attempts": 2, "on_max_attempts": "kill"},
            ingress={
                "default_journal_retention_ms": 1,
                "default_idempotency_retention_ms": 2,
                "default_workflow_completion_retention_ms": 3,
            },
            invoker={"inactivity_timeout_ms": 1_000, "abort_timeout_ms": 2_000},
        )
    )
    rows_a = _replay(StateMachine(node_a._state_machine_config(0)), records)
    rows_b = _replay(StateMachine(node_b._state_machine_config(0)), records)
    assert len(rows_a) > 20, "the log leaves statuses, journals, timers and outbox rows behind"
    assert rows_a == rows_b
