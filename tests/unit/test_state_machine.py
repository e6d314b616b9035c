"""Unit tests of the partition state machine: records in, state and actions out, no I/O."""

from __future__ import annotations

import msgpack
import pytest

from partition_worker import keys
from partition_worker.actions import AbortAttempt, BecomeLeader, InvokeAttempt, Notify, ReplyToIngress, ScheduleTimer, SendOutbox
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import REQUESTED_ACK, MessageType, message_type_of
from protocol.routing import keyed_or_random_id, workflow_invocation_id
from wal.records import (
    AnnounceLeader,
    Attach,
    AttemptEvents,
    AttemptFailed,
    AttemptFrame,
    Cancel,
    Envelope,
    Failure,
    HandlerKind,
    IngressSink,
    InvocationResponse,
    Invoke,
    Kill,
    Record,
    ServiceType,
    Target,
    TimerFired,
    TimerKind,
)
from wal.replies import ReplyKind

COUNTER_ADD = Target("Counter", "add", "alice", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
COUNTER_GET = Target("Counter", "get", "alice", ServiceType.VIRTUAL_OBJECT, HandlerKind.SHARED)
GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
SIGNUP_RUN = Target("Signup", "run", "u1", ServiceType.WORKFLOW, HandlerKind.WORKFLOW)
SIGNUP_CLICK = Target("Signup", "click", "u1", ServiceType.WORKFLOW, HandlerKind.SHARED)


class Harness:
    def __init__(self) -> None:
        self.store = MemoryPartitionStore()
        self.machine = StateMachine(StateMachineConfig(partition=0))
        self.now_ms = 1_000_000

    def apply(self, body: object, *, epoch: int = 0, dedup: tuple[str, int] | None = None) -> list[object]:
        txn = Transaction(self.store)
        actions = self.machine.apply(txn, Record(Envelope(self.now_ms, epoch, dedup), body))  # type: ignore[arg-type]
        txn.commit()
        return list(actions)

    def status(self, invocation_id: str) -> InvocationStatus | None:
        raw = self.store.get(keys.invocation_key(invocation_id))
        return InvocationStatus.decode(raw) if raw is not None else None

    def journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        return [tuple(msgpack.unpackb(v)) for _, v in self.store.scan(keys.journal_prefix(invocation_id))]  # type: ignore[misc]

    def state(self, service: str, key: str, name: bytes) -> bytes | None:
        return self.store.get(keys.state_key(service, key, name))

    def send(self, invocation_id: str, attempt: int, *messages: object, flags: int = 0, call_target: Target | None = None) -> list[object]:
        frames = tuple(
            AttemptFrame(int(message_type_of(m)), flags, m.SerializeToString(), call_target)  # type: ignore[attr-defined]
            for m in messages
        )
        return self.apply(AttemptEvents(invocation_id, attempt, frames, "dp_1", 6))


def output(value: bytes) -> pb.OutputCommandMessage:
    message = pb.OutputCommandMessage()
    message.value.content = value
    return message


def invoke(
    target: Target,
    invocation_id: str | None = None,
    *,
    sink: IngressSink | None = None,
    submit: IngressSink | None = None,
    retention_ms: int = 0,
) -> Invoke:
    return Invoke(
        invocation_id=invocation_id or keyed_or_random_id(target.key),
        target=target,
        body=b"1",
        response_sink=sink,
        submit_sink=submit,
        completion_retention_ms=retention_ms,
    )


def of_type(actions: list[object], cls: type) -> list:
    return [a for a in actions if isinstance(a, cls)]


def test_invoke_starts_first_attempt_with_input_in_journal() -> None:
    h = Harness()
    record = invoke(GREETER, submit=IngressSink(1, 7))
    actions = h.apply(record)
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(record.invocation_id, 1)]
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.kind is ReplyKind.SUBMITTED and not reply.reply.previously_accepted
    (entry,) = h.journal(record.invocation_id)
    assert entry[0] == MessageType.INPUT_COMMAND
    parsed = pb.InputCommandMessage.FromString(entry[1])
    assert parsed.value.content == b"1"


def test_exclusive_handlers_queue_per_key_and_hand_over_the_lock_in_order() -> None:
    h = Harness()
    first, second, third = (invoke(COUNTER_ADD) for _ in range(3))
    assert of_type(h.apply(first), InvokeAttempt)
    assert not of_type(h.apply(second), InvokeAttempt)
    assert not of_type(h.apply(third), InvokeAttempt)
    assert h.status(second.invocation_id).phase is Phase.INBOXED  # type: ignore[union-attr]
    shared = invoke(COUNTER_GET)
    assert of_type(h.apply(shared), InvokeAttempt), "shared handlers do not wait for the lock"
    actions = h.send(first.invocation_id, 1, output(b"1"), pb.EndMessage())
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(second.invocation_id, 1)]
    assert h.status(third.invocation_id).phase is Phase.INBOXED  # type: ignore[union-attr]
    actions = h.send(second.invocation_id, 1, pb.EndMessage())
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(third.invocation_id, 1)]


def test_set_state_output_end_delivers_outcome_and_keeps_state() -> None:
    h = Harness()
    sink = IngressSink(1, 42)
    record = invoke(COUNTER_ADD, sink=sink, retention_ms=60_000)
    h.apply(record)
    set_state = pb.SetStateCommandMessage(key=b"count")
    set_state.value.content = b"5"
    actions = h.send(record.invocation_id, 1, set_state, output(b"5"), pb.EndMessage())
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.sink == sink and reply.reply.kind is ReplyKind.OUTCOME and reply.reply.outcome.value == b"5"
    assert h.state("Counter", "alice", b"count") == b"5"
    status = h.status(record.invocation_id)
    assert status is not None and status.phase is Phase.COMPLETED and status.outcome.value == b"5"  # type: ignore[union-attr]
    assert h.journal(record.invocation_id) == [], "the journal of a completed invocation is dropped"
    assert of_type(actions, ScheduleTimer)[0].timer_kind == TimerKind.CLEANUP


def test_shared_handler_cannot_write_state() -> None:
    h = Harness()
    record = invoke(COUNTER_GET, sink=IngressSink(1, 1))
    h.apply(record)
    set_state = pb.SetStateCommandMessage(key=b"count")
    set_state.value.content = b"5"
    actions = h.send(record.invocation_id, 1, set_state)
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.outcome.failure.code == 571
    assert h.state("Counter", "alice", b"count") is None


def test_run_proposal_is_stored_then_notified_and_v7_ack_requested() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    proposal = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"ok"')
    actions = h.send(record.invocation_id, 1, pb.RunCommandMessage(result_completion_id=1, name="pay"), proposal)
    (notify,) = of_type(actions, Notify)
    assert notify.message_type == MessageType.RUN_COMPLETION and notify.entry_index == 2
    assert pb.RunCompletionNotificationMessage.FromString(notify.payload).value.content == b'"ok"'
    # A replayed proposal for the same completion does not overwrite the first.
    again = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"other"')
    assert not of_type(h.send(record.invocation_id, 1, again), Notify)
    proposal2 = pb.ProposeRunCompletionMessage(result_completion_id=2, value=b"2")
    actions = h.send(record.invocation_id, 1, pb.RunCommandMessage(result_completion_id=2), proposal2, flags=REQUESTED_ACK)
    types = [a.message_type for a in of_type(actions, Notify)]
    assert types == [MessageType.RUN_COMPLETION, MessageType.PROPOSE_RUN_COMPLETION_ACK]


def test_sleep_suspends_then_timer_resumes_with_next_attempt() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    sleep = pb.SleepCommandMessage(wake_up_time=h.now_ms + 5_000, result_completion_id=1)
    actions = h.send(record.invocation_id, 1, sleep, pb.SuspensionMessage(waiting_completions=[1], waiting_signals=[1]))
    (timer,) = of_type(actions, ScheduleTimer)
    assert timer.fire_at_ms == h.now_ms + 5_000
    assert h.status(record.invocation_id).phase is Phase.SUSPENDED  # type: ignore[union-attr]
    h.now_ms += 5_000
    actions = h.apply(TimerFired(timer.fire_at_ms, record.invocation_id, TimerKind.SLEEP, 1))
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(record.invocation_id, 2)]
    assert [t for t, _ in h.journal(record.invocation_id)] == [
        MessageType.INPUT_COMMAND,
        MessageType.SLEEP_COMMAND,
        MessageType.SLEEP_COMPLETION,
    ]
    # The timer fires once: a repeated record is a no-op.
    assert h.apply(TimerFired(timer.fire_at_ms, record.invocation_id, TimerKind.SLEEP, 1)) == []


def test_suspension_on_an_available_notification_resumes_at_once() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    proposal = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"1")
    actions = h.send(
        record.invocation_id, 1, pb.RunCommandMessage(result_completion_id=1), proposal, pb.SuspensionMessage(waiting_completions=[1])
    )
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(record.invocation_id, 2)]


def test_messages_of_a_superseded_attempt_are_ignored() -> None:
    h = Harness()
    record = invoke(COUNTER_ADD)
    h.apply(record)
    h.apply(AttemptFailed(record.invocation_id, 1, Failure(500, "boom")))
    set_state = pb.SetStateCommandMessage(key=b"k")
    set_state.value.content = b"v"
    assert h.send(record.invocation_id, 1, set_state) == []
    assert h.state("Counter", "alice", b"k") is None


def test_failed_attempt_backs_off_then_retries() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    actions = h.apply(AttemptFailed(record.invocation_id, 1, Failure(500, "boom")))
    (timer,) = of_type(actions, ScheduleTimer)
    assert timer.timer_kind == TimerKind.RETRY and timer.fire_at_ms == h.now_ms + 500, "Restate's default first retry"
    status = h.status(record.invocation_id)
    assert status.phase is Phase.BACKING_OFF and status.last_failure == Failure(500, "boom")  # type: ignore[union-attr]
    actions = h.apply(TimerFired(timer.fire_at_ms, record.invocation_id, TimerKind.RETRY, timer.ref))
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(record.invocation_id, 2)]
    actions = h.apply(AttemptFailed(record.invocation_id, 2, Failure(500, "boom")))
    assert of_type(actions, ScheduleTimer)[0].fire_at_ms == h.now_ms + 1000, "backoff doubles"


def test_records_of_a_superseded_leader_epoch_are_fenced() -> None:
    h = Harness()
    assert of_type(h.apply(AnnounceLeader(1, 1)), BecomeLeader) == [BecomeLeader(1, 1)]
    record = invoke(COUNTER_ADD)
    h.apply(record, epoch=1)
    h.apply(AnnounceLeader(2, 2))
    set_state = pb.SetStateCommandMessage(key=b"k")
    set_state.value.content = b"v"
    frames = (AttemptFrame(int(MessageType.SET_STATE_COMMAND), 0, set_state.SerializeToString()),)
    attempt = h.status(record.invocation_id).attempt  # type: ignore[union-attr]
    assert h.apply(AttemptEvents(record.invocation_id, attempt, frames), epoch=1) == []
    assert h.state("Counter", "alice", b"k") is None
    h.apply(AttemptEvents(record.invocation_id, attempt, frames), epoch=2)
    assert h.state("Counter", "alice", b"k") == b"v"


def test_new_leader_restarts_running_attempts_and_leaves_timers_to_the_timer_service() -> None:
    h = Harness()
    h.apply(AnnounceLeader(1, 1))
    running = invoke(GREETER)
    sleeping = invoke(GREETER)
    h.apply(running)
    h.apply(sleeping)
    h.send(
        sleeping.invocation_id,
        1,
        pb.SleepCommandMessage(wake_up_time=h.now_ms + 100, result_completion_id=1),
        pb.SuspensionMessage(waiting_completions=[1]),
    )
    actions = h.apply(AnnounceLeader(1, 2))
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(running.invocation_id, 2)]
    assert of_type(actions, ScheduleTimer) == [], "the announcement does not read every timer"
    stored = [keys.parse_timer_key(row) for row, _ in h.store.scan(keys.TIMER_PREFIX)]
    assert stored == [(h.now_ms + 100, sleeping.invocation_id, int(TimerKind.SLEEP), 1)], "the timer service loads it from the store"


def test_duplicate_outbox_messages_are_dropped() -> None:
    h = Harness()
    record = invoke(GREETER)
    assert h.apply(record, dedup=("p3", 1))
    assert h.apply(invoke(GREETER), dedup=("p3", 1)) == []
    assert h.apply(invoke(GREETER), dedup=("p3", 2))


def test_workflow_run_once_send_previously_accepted_call_conflicts() -> None:
    h = Harness()
    workflow_id = workflow_invocation_id("Signup", "u1")
    h.apply(invoke(SIGNUP_RUN, workflow_id, submit=IngressSink(1, 1)))
    (reply,) = of_type(h.apply(invoke(SIGNUP_RUN, workflow_id, submit=IngressSink(1, 2))), ReplyToIngress)
    assert reply.reply.previously_accepted
    (reply,) = of_type(h.apply(invoke(SIGNUP_RUN, workflow_id, sink=IngressSink(1, 3))), ReplyToIngress)
    assert reply.reply.kind is ReplyKind.OUTCOME and reply.reply.outcome.failure == Failure(409, "the workflow method was already invoked")


def test_durable_promise_wakes_the_waiting_run() -> None:
    h = Harness()
    run_id = workflow_invocation_id("Signup", "u1")
    h.apply(invoke(SIGNUP_RUN, run_id))
    h.send(run_id, 1, pb.GetPromiseCommandMessage(key="clicked", result_completion_id=1), pb.SuspensionMessage(waiting_completions=[1]))
    assert h.status(run_id).phase is Phase.SUSPENDED  # type: ignore[union-attr]
    click = invoke(SIGNUP_CLICK)
    h.apply(click)
    complete = pb.CompletePromiseCommandMessage(key="clicked", result_completion_id=1)
    complete.completion_value.content = b'"s3cret"'
    actions = h.send(click.invocation_id, 1, complete)
    assert InvokeAttempt(run_id, 2) in actions
    (notify,) = of_type(actions, Notify)
    assert notify.message_type == MessageType.COMPLETE_PROMISE_COMPLETION
    # Completing twice fails the second completer with 409.
    actions = h.send(click.invocation_id, 1, complete)
    (notify,) = of_type(actions, Notify)
    assert pb.CompletePromiseCompletionNotificationMessage.FromString(notify.payload).failure.code == 409
    run_journal = h.journal(run_id)
    assert run_journal[-1][0] == MessageType.GET_PROMISE_COMPLETION
    assert pb.GetPromiseCompletionNotificationMessage.FromString(run_journal[-1][1]).value.content == b'"s3cret"'


def test_call_goes_through_outbox_and_response_becomes_notification() -> None:
    h = Harness()
    caller = invoke(GREETER)
    h.apply(caller)
    call = pb.CallCommandMessage(
        service_name="Counter", handler_name="add", key="bob", parameter=b"1", invocation_id_notification_idx=1, result_completion_id=2
    )
    actions = h.send(
        caller.invocation_id, 1, call, call_target=Target("Counter", "add", None, ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
    )
    (out,) = of_type(actions, SendOutbox)
    assert isinstance(out.body, Invoke) and out.body.target.key == "bob" and out.body.response_sink.completion_id == 2
    (id_note,) = of_type(actions, Notify)
    assert pb.CallInvocationIdCompletionNotificationMessage.FromString(id_note.payload).invocation_id == out.body.invocation_id
    # The same journal applied again derives the same callee id.
    h2 = Harness()
    h2.apply(caller)
    again = h2.send(
        caller.invocation_id, 1, call, call_target=Target("Counter", "add", None, ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
    )
    assert of_type(again, SendOutbox)[0].body.invocation_id == out.body.invocation_id
    from wal.records import Outcome

    actions = h.apply(InvocationResponse(out.body.response_sink, Outcome(value=b"7"), out.body.invocation_id))
    (notify,) = of_type(actions, Notify)
    assert notify.message_type == MessageType.CALL_COMPLETION
    assert pb.CallCompletionNotificationMessage.FromString(notify.payload).value.content == b"7"


def test_a_drained_inbox_is_read_from_above_the_last_row_taken_and_the_hint_goes_with_the_queue() -> None:
    """Each hand-over records the seq it took (`keys.inbox_head_key`) and the next one seeks from above it; rows
    removed from the middle (a cancelled queued call) are skipped; once the inbox is empty the hint row is gone."""
    h = Harness()
    holder, *queued = (invoke(COUNTER_ADD) for _ in range(5))
    for record in (holder, *queued):
        h.apply(record)
    head_row = keys.inbox_head_key("Counter", "alice")
    assert h.store.get(head_row) is None
    h.apply(Cancel(queued[1].invocation_id))  # leaves the inbox from the middle
    started = []
    running = holder.invocation_id
    while True:
        (attempt,) = of_type(h.send(running, 1, pb.EndMessage()), InvokeAttempt) or (None,)
        if attempt is None:
            break
        started.append(attempt.invocation_id)
        taken = h.store.get(head_row)
        assert taken is not None and h.status(attempt.invocation_id).phase is Phase.INVOKED  # type: ignore[union-attr]
        assert h.store.get(keys.inbox_prefix("Counter", "alice") + taken) is None, "the hint names a row already taken"
        running = attempt.invocation_id
    assert started == [queued[0].invocation_id, queued[2].invocation_id, queued[3].invocation_id]
    assert h.store.get(head_row) is None and h.store.get(keys.lock_key("Counter", "alice")) is None
    again = invoke(COUNTER_ADD)  # a new queue on the same key after the hint is gone
    late = invoke(COUNTER_ADD)
    h.apply(again)
    h.apply(late)
    assert of_type(h.send(again.invocation_id, 1, pb.EndMessage()), InvokeAttempt) == [InvokeAttempt(late.invocation_id, 1)]


def test_cancel_running_invocation_appends_cancel_signal_and_inboxed_one_completes() -> None:
    h = Harness()
    running = invoke(COUNTER_ADD)
    queued = invoke(COUNTER_ADD, sink=IngressSink(1, 9))
    h.apply(running)
    h.apply(queued)
    actions = h.apply(Cancel(running.invocation_id))
    (notify,) = of_type(actions, Notify)
    assert notify.message_type == MessageType.SIGNAL and pb.SignalNotificationMessage.FromString(notify.payload).idx == 1
    actions = h.apply(Cancel(queued.invocation_id))
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.outcome.failure.code == 409
    assert list(h.store.scan(keys.inbox_prefix("Counter", "alice"))) == []


def test_kill_completes_with_409_aborts_attempt_and_frees_key() -> None:
    h = Harness()
    first = invoke(COUNTER_ADD, sink=IngressSink(1, 1))
    second = invoke(COUNTER_ADD)
    h.apply(first)
    h.apply(second)
    actions = h.apply(Kill(first.invocation_id))
    assert AbortAttempt(first.invocation_id, 1) in actions
    assert InvokeAttempt(second.invocation_id, 1) in actions
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.reply.outcome.failure == Failure(409, "killed")


def test_attach_and_output() -> None:
    h = Harness()
    record = invoke(GREETER, retention_ms=1000)
    h.apply(record)
    (reply,) = of_type(h.apply(Attach(record.invocation_id, IngressSink(1, 5), block=False)), ReplyToIngress)
    assert reply.reply.kind is ReplyKind.NOT_READY
    assert h.apply(Attach(record.invocation_id, IngressSink(1, 6), block=True)) == []
    actions = h.send(record.invocation_id, 1, output(b"done"), pb.EndMessage())
    (reply,) = of_type(actions, ReplyToIngress)
    assert reply.sink == IngressSink(1, 6) and reply.reply.outcome.value == b"done"
    (reply,) = of_type(h.apply(Attach(record.invocation_id, IngressSink(1, 7))), ReplyToIngress)
    assert reply.reply.outcome.value == b"done"
    (reply,) = of_type(h.apply(Attach("inv_1" + "0" * 33, IngressSink(1, 8))), ReplyToIngress)
    assert reply.reply.kind is ReplyKind.NOT_FOUND


@pytest.mark.parametrize("count", [1, 25])
def test_replaying_the_same_records_gives_the_same_state(count: int) -> None:
    """Determinism: two fresh state machines fed the same records end with identical stores."""

    def run() -> dict[bytes, bytes]:
        h = Harness()
        ids = []
        for i in range(count):
            record = Invoke(f"inv_1{i:011d}{'0' * 22}", COUNTER_ADD, b"1")
            ids.append(record.invocation_id)
            h.apply(record)
        for invocation_id in ids:
            h.send(invocation_id, 1, output(b"x"), pb.EndMessage())
        return dict(h.store.rows)

    assert run() == run()


def test_an_undecodable_message_fails_the_attempt_instead_of_the_partition() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    frames = (AttemptFrame(0x7777, 0, b"abc"),)
    actions = h.apply(AttemptEvents(record.invocation_id, 1, frames))
    (timer,) = of_type(actions, ScheduleTimer)
    assert timer.timer_kind == TimerKind.RETRY
    status = h.status(record.invocation_id)
    assert status.phase is Phase.BACKING_OFF and "0x7777" in status.last_failure.message  # type: ignore[union-attr]


def test_cancel_or_kill_of_a_completed_invocation_is_a_conflict() -> None:
    h = Harness()
    record = invoke(GREETER, retention_ms=1000)
    h.apply(record)
    h.send(record.invocation_id, 1, output(b"x"), pb.EndMessage())
    for command in (Cancel(record.invocation_id, IngressSink(1, 1)), Kill(record.invocation_id, IngressSink(1, 2))):
        (reply,) = of_type(h.apply(command), ReplyToIngress)
        assert reply.reply.kind is ReplyKind.CONFLICT and "already completed" in reply.reply.message


def test_every_record_kind_round_trips_through_the_codec() -> None:
    from wal.records import (
        JournalSink,
        Kill,
        OutboxTruncate,
        Outcome,
        Purge,
        Resume,
        Signal,
        decode_record,
        encode_record,
    )

    bodies = [
        AnnounceLeader(3, 9),
        invoke(COUNTER_ADD, sink=IngressSink(1, 2), submit=IngressSink(1, 3), retention_ms=5),
        Invoke("inv_1x", GREETER, b"", response_sink=JournalSink("inv_1y", 4, 0x800D), execute_at_ms=77),
        Invoke("inv_1x", GREETER, b"", completion_retention_ms=9, journal_retention_ms=8),
        AttemptEvents("inv_1x", 2, (AttemptFrame(0x40D, 0, b"c", COUNTER_ADD), AttemptFrame(3, 0, b"")), "dp_1", 7),
        AttemptEvents(
            "inv_1x", 2, (AttemptFrame(0x40D, 0, b"c", COUNTER_ADD, call_retention_ms=60_000, call_journal_retention_ms=0),), "dp_1", 7
        ),
        AttemptFailed("inv_1x", 2, Failure(503, "gone"), 100, "dp_1", 6),
        TimerFired(5, "inv_1x", TimerKind.SLEEP, 3),
        TimerFired(6, "inv_1x", TimerKind.JOURNAL_CLEANUP),
        Cancel("inv_1x", IngressSink(2, 2)),
        Kill("inv_1x"),
        Purge("inv_1x", IngressSink(2, 3)),
        Resume("inv_1x"),
        Attach("inv_1x", JournalSink("inv_1z", 1, 0x8012), block=False),
        Signal("inv_1x", 17, None, Outcome(value=b"v"), IngressSink(1, 1)),
        Signal("inv_1x", None, "named", Outcome(failure=Failure(500, "no"))),
        InvocationResponse(JournalSink("inv_1z", 1, 0x800D), Outcome(value=b""), "inv_1x"),
        OutboxTruncate(12),
    ]
    for body in bodies:
        record = Record(Envelope(123, 4, ("p1", 9)), body)  # type: ignore[arg-type]
        decoded = decode_record(encode_record(record))
        assert decoded == record, body
        assert type(decoded.body) is type(body)


def test_a_status_round_trips_with_enums_and_union_sinks() -> None:
    from wal.records import JournalSink, Outcome

    status = InvocationStatus(
        Phase.SUSPENDED, SIGNUP_RUN, 1, 2, attempt=3, response_sinks=(IngressSink(1, 2), JournalSink("inv_1q", 5, 0x800D)),
        waiting_completions=(1, 2), waiting_named_signals=("a",), outcome=Outcome(failure=Failure(409, "x")),
    )  # fmt: skip
    decoded = InvocationStatus.decode(status.encode())
    assert decoded == status and decoded.phase is Phase.SUSPENDED and isinstance(decoded.response_sinks[1], JournalSink)


def test_a_suspension_that_waits_for_nothing_fails_the_attempt_instead_of_suspending_for_ever() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    actions = h.send(record.invocation_id, 1, pb.SuspensionMessage())
    (timer,) = of_type(actions, ScheduleTimer)
    assert timer.timer_kind == TimerKind.RETRY
    status = h.status(record.invocation_id)
    assert status is not None and status.phase is Phase.BACKING_OFF
    assert status.last_failure is not None and "waits for no completion" in status.last_failure.message
