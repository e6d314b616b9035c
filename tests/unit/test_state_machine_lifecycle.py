"""Unit tests of the admin commands in the state machine: kill (with children), pause, resume, purge-journal, restart-as-new, state patches, promises."""

from __future__ import annotations

import dataclasses

from partition_worker import keys
from partition_worker.actions import AbortAttempt, DeadlockDetected, InvokeAttempt, ReplyToIngress, SendOutbox
from partition_worker.status import Phase
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from protocol.ids import InvocationId
from protocol.state_version import state_version
from tests.unit.test_state_machine import COUNTER_ADD, GREETER, SIGNUP_RUN, Harness, invoke, of_type, output
from wal.records import (
    AttemptFailed,
    Cancel,
    CompletePromise,
    Failure,
    IngressSink,
    InvocationResponse,
    Invoke,
    Kill,
    Outcome,
    PatchState,
    Pause,
    PurgeJournal,
    RestartAsNew,
    Resume,
    Target,
)
from wal.replies import Reply, ReplyKind

ADMIN = IngressSink(1, 99)


def retained(target: Target) -> Invoke:
    """An invocation that keeps its outcome and its journal for a minute once completed."""
    return dataclasses.replace(invoke(target, retention_ms=60_000), journal_retention_ms=60_000)


def reply_of(actions: list[object]) -> Reply:
    (reply,) = [a.reply for a in of_type(actions, ReplyToIngress) if a.sink == ADMIN]
    return reply


def call(h: Harness, caller: str, attempt: int, target_key: str, completion: int) -> str:
    """The caller's SDK calls Counter/<target_key>/add; returns the callee id the runtime assigned."""
    message = pb.CallCommandMessage(
        service_name="Counter", handler_name="add", key=target_key, parameter=b"1",
        invocation_id_notification_idx=completion, result_completion_id=completion + 1,
    )  # fmt: skip
    actions = h.send(caller, attempt, message, call_target=dataclasses.replace(COUNTER_ADD, key=None))
    (outbox,) = of_type(actions, SendOutbox)
    assert isinstance(outbox.body, Invoke)
    h.apply(outbox.body)  # the callee's partition is this one in the harness
    return outbox.body.invocation_id


def test_kill_propagates_to_the_children_and_frees_a_deadlocked_key() -> None:
    h = Harness()
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    child = call(h, holder.invocation_id, 1, "alice", 1)  # an object calling itself on its own key: deadlock
    assert h.status(child).phase is Phase.INBOXED  # type: ignore[union-attr]
    queued = invoke(COUNTER_ADD)
    h.apply(queued)
    actions = h.apply(Kill(holder.invocation_id, ADMIN))
    assert reply_of(actions).kind is ReplyKind.ACK
    assert h.status(child).outcome.failure == Failure(409, "killed")  # type: ignore[union-attr]
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(queued.invocation_id, 1)], "the queued work gets the key, not the self-call"


def test_kill_reaches_a_child_on_another_partition_through_the_outbox() -> None:
    h = Harness()
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    message = pb.CallCommandMessage(
        service_name="Counter", handler_name="add", key="bob", parameter=b"1", invocation_id_notification_idx=1, result_completion_id=2
    )
    (outbox,) = of_type(h.send(holder.invocation_id, 1, message, call_target=dataclasses.replace(COUNTER_ADD, key=None)), SendOutbox)
    child = outbox.body.invocation_id  # type: ignore[union-attr]
    actions = h.apply(Kill(holder.invocation_id, ADMIN))
    assert [a.body for a in of_type(actions, SendOutbox) if isinstance(a.body, Kill)] == [Kill(child)]


def test_pause_stops_an_attempt_and_resume_restarts_it() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    actions = h.apply(Pause(record.invocation_id, ADMIN))
    assert reply_of(actions).kind is ReplyKind.ACK
    assert of_type(actions, AbortAttempt) == [AbortAttempt(record.invocation_id, 1)]
    assert h.status(record.invocation_id).phase is Phase.PAUSED  # type: ignore[union-attr]
    assert reply_of(h.apply(Pause(record.invocation_id, ADMIN))).kind is ReplyKind.DONE
    assert h.send(record.invocation_id, 1, output(b"late"), pb.EndMessage()) == []  # the aborted attempt's late messages
    actions = h.apply(Resume(record.invocation_id, ADMIN))
    assert reply_of(actions).kind is ReplyKind.ACK
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(record.invocation_id, 2)]


def test_pause_of_a_backing_off_invocation_drops_its_retry() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    h.apply(AttemptFailed(record.invocation_id, 1, Failure(500, "boom")))
    assert reply_of(h.apply(Pause(record.invocation_id, ADMIN))).kind is ReplyKind.ACK
    assert not [k for k in h.store.rows if k[0] == 0x08], "no retry timer is left"


def test_pause_and_resume_refusals() -> None:
    h = Harness()
    holder, queued = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    h.apply(holder)
    h.apply(queued)
    refused = reply_of(h.apply(Pause(queued.invocation_id, ADMIN)))
    assert refused.kind is ReplyKind.CONFLICT and "is not running, cannot be paused" in refused.message
    assert reply_of(h.apply(Resume(queued.invocation_id, ADMIN))).kind is ReplyKind.NOT_READY
    h.send(holder.invocation_id, 1, output(b"1"), pb.EndMessage())
    done = invoke(GREETER, retention_ms=60_000)
    h.apply(done)
    h.send(done.invocation_id, 1, output(b"1"), pb.EndMessage())
    assert reply_of(h.apply(Resume(done.invocation_id, ADMIN))).kind is ReplyKind.CONFLICT
    missing = str(InvocationId.random(5))
    assert reply_of(h.apply(Pause(missing, ADMIN))).kind is ReplyKind.NOT_FOUND


def test_resume_on_another_deployment_checks_state_and_protocol() -> None:
    h = Harness()
    record = invoke(GREETER)
    h.apply(record)
    h.send(record.invocation_id, 1, pb.SleepCommandMessage(wake_up_time=10**13, result_completion_id=1))
    running = reply_of(h.apply(Resume(record.invocation_id, ADMIN, "dp_2", 5, 7)))
    assert running.kind is ReplyKind.CONFLICT and "deployment id cannot be changed" in running.message
    h.send(record.invocation_id, 1, pb.SuspensionMessage(waiting_completions=[1]))
    assert reply_of(h.apply(Resume(record.invocation_id, ADMIN, "dp_2", 7, 7))).kind is ReplyKind.INVALID  # pinned on v6
    actions = h.apply(Resume(record.invocation_id, ADMIN, "dp_2", 5, 7))
    assert reply_of(actions).kind is ReplyKind.ACK and of_type(actions, InvokeAttempt)
    assert h.status(record.invocation_id).deployment_id == "dp_2"  # type: ignore[union-attr]


def test_cancel_answers_done_for_queued_work_and_ack_for_running() -> None:
    h = Harness()
    holder, queued = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    h.apply(holder)
    h.apply(queued)
    assert reply_of(h.apply(Cancel(queued.invocation_id, ADMIN))).kind is ReplyKind.DONE
    assert reply_of(h.apply(Cancel(holder.invocation_id, ADMIN))).kind is ReplyKind.ACK


def test_purge_journal_keeps_the_outcome_and_restart_as_new_then_has_no_input() -> None:
    h = Harness()
    done = retained(GREETER)
    h.apply(done)
    h.send(done.invocation_id, 1, output(b'"hi"'), pb.EndMessage())
    assert reply_of(h.apply(PurgeJournal(done.invocation_id, ADMIN))).kind is ReplyKind.ACK
    status = h.status(done.invocation_id)
    assert status is not None and status.outcome.value == b'"hi"' and h.journal(done.invocation_id) == []  # type: ignore[union-attr]
    new_id = str(InvocationId.random(InvocationId.parse(done.invocation_id).partition_key))
    assert reply_of(h.apply(RestartAsNew(done.invocation_id, new_id, ADMIN))).kind is ReplyKind.GONE


def test_restart_as_new_runs_the_same_input_under_a_new_id() -> None:
    h = Harness()
    done = retained(COUNTER_ADD)
    h.apply(done)
    h.send(done.invocation_id, 1, output(b"1"), pb.EndMessage())
    new_id = str(InvocationId.random(InvocationId.parse(done.invocation_id).partition_key))
    actions = h.apply(RestartAsNew(done.invocation_id, new_id, ADMIN))
    reply = reply_of(actions)
    assert reply.kind is ReplyKind.ACK and reply.new_invocation_id == new_id
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(new_id, 1)]
    restarted = h.status(new_id)
    assert restarted is not None and restarted.restarted_from == done.invocation_id and restarted.target == COUNTER_ADD
    assert h.journal(new_id) == h.journal(done.invocation_id)[:1], "the new journal is the old input"


def test_restart_as_new_refuses_running_queued_and_workflows() -> None:
    h = Harness()
    holder, queued = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    h.apply(holder)
    h.apply(queued)
    fresh = str(InvocationId.random(1))
    assert reply_of(h.apply(RestartAsNew(holder.invocation_id, fresh, ADMIN))).kind is ReplyKind.CONFLICT
    assert reply_of(h.apply(RestartAsNew(queued.invocation_id, fresh, ADMIN))).kind is ReplyKind.NOT_READY
    run = invoke(SIGNUP_RUN, retention_ms=60_000)
    h.apply(run)
    h.send(run.invocation_id, 1, output(b"1"), pb.EndMessage())
    assert reply_of(h.apply(RestartAsNew(run.invocation_id, fresh, ADMIN))).kind is ReplyKind.UNSUPPORTED


def test_state_version_is_restates() -> None:
    assert state_version([(b"name", b"bob")]) == "tDqA04Lj3_qJ-PgNPTecXDGZgpwy6jm2Ni2BYqJIthM"  # Restate's own example


def test_state_patch_replaces_the_state_checks_the_version_and_waits_for_the_key() -> None:
    h = Harness()
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    set_state = pb.SetStateCommandMessage(key=b"count")
    set_state.value.content = b"3"
    h.send(holder.invocation_id, 1, set_state)
    patch = PatchState("Counter", "alice", ((b"count", b"7"), (b"note", b"x")), state_version([(b"count", b"3")]), ADMIN)
    assert reply_of(h.apply(patch)).kind is ReplyKind.ACK, "queued: accepted, applied later"
    assert h.state("Counter", "alice", b"count") == b"3", "the key is held: the patch waits in the inbox"
    queued = invoke(COUNTER_ADD)
    h.apply(queued)
    actions = h.send(holder.invocation_id, 1, output(b"3"), pb.EndMessage())
    assert h.state("Counter", "alice", b"count") == b"7" and h.state("Counter", "alice", b"note") == b"x"
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(queued.invocation_id, 1)], "then the next invocation runs"
    assert not of_type(actions, ReplyToIngress), "the queued patch's request was answered when it was queued"
    h.send(queued.invocation_id, 1, output(b"1"), pb.EndMessage())
    stale = reply_of(h.apply(PatchState("Counter", "alice", ((b"count", b"0"),), "stale", ADMIN)))
    assert stale.kind is ReplyKind.CONFLICT and "no longer stale" in stale.message
    assert h.state("Counter", "alice", b"count") == b"7", "a stale version changes nothing"
    current = state_version([(b"count", b"7"), (b"note", b"x")])
    assert reply_of(h.apply(PatchState("Counter", "alice", ((b"count", b"0"),), current, ADMIN))).kind is ReplyKind.DONE
    assert h.state("Counter", "alice", b"count") == b"0" and h.state("Counter", "alice", b"note") is None
    h.apply(PatchState("Counter", "alice", ((b"count", b"5"),)))
    assert h.state("Counter", "alice", b"count") == b"5", "without a version the patch always applies"


def test_a_promise_completed_from_outside_wakes_its_waiter_once() -> None:
    h = Harness()
    run = invoke(SIGNUP_RUN)
    h.apply(run)
    h.send(run.invocation_id, 1, pb.GetPromiseCommandMessage(key="clicked", result_completion_id=1))
    journal_before = len(h.journal(run.invocation_id))
    resolve = CompletePromise("Signup", "u1", "clicked", Outcome(value=b'"s3cret"'), ADMIN)
    assert reply_of(h.apply(resolve)).kind is ReplyKind.DONE
    journal = h.journal(run.invocation_id)
    assert len(journal) == journal_before + 1
    message_type, payload = journal[-1]
    assert message_type == MessageType.GET_PROMISE_COMPLETION
    assert pb.GetPromiseCompletionNotificationMessage.FromString(payload) == pb.GetPromiseCompletionNotificationMessage(
        completion_id=1, value=pb.Value(content=b'"s3cret"')
    )
    again = reply_of(h.apply(CompletePromise("Signup", "u1", "clicked", Outcome(value=b'"other"'), ADMIN)))
    assert again.kind is ReplyKind.CONFLICT and "already completed" in again.message
    assert len(h.journal(run.invocation_id)) == journal_before + 1, "a promise completes once"


def test_a_promise_completed_before_anyone_awaits_it_answers_the_later_get() -> None:
    h = Harness()
    failure = Outcome(failure=Failure(400, "link expired"))
    assert reply_of(h.apply(CompletePromise("Signup", "u1", "clicked", failure, ADMIN))).kind is ReplyKind.DONE
    run = invoke(SIGNUP_RUN)
    h.apply(run)
    h.send(run.invocation_id, 1, pb.GetPromiseCommandMessage(key="clicked", result_completion_id=1))
    message_type, payload = h.journal(run.invocation_id)[-1]
    assert message_type == MessageType.GET_PROMISE_COMPLETION
    assert pb.GetPromiseCompletionNotificationMessage.FromString(payload).failure == pb.Failure(code=400, message="link expired")


# ---------------------------------------------------------------- deadlocks


def _call(h: Harness, caller: str, attempt: int, service_target: Target, key: str, completion: int) -> tuple[list[object], Invoke]:
    message = pb.CallCommandMessage(
        service_name=service_target.service, handler_name=service_target.handler, key=key, parameter=b"1",
        invocation_id_notification_idx=completion, result_completion_id=completion + 1,
    )  # fmt: skip
    (outbox,) = of_type(h.send(caller, attempt, message, call_target=dataclasses.replace(service_target, key=None)), SendOutbox)
    assert isinstance(outbox.body, Invoke)
    return h.apply(outbox.body), outbox.body


def test_a_self_call_on_ones_own_key_is_reported_as_a_deadlock() -> None:
    h = Harness()
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    actions, child = _call(h, holder.invocation_id, 1, COUNTER_ADD, "alice", 1)
    (found,) = of_type(actions, DeadlockDetected)
    assert found.invocation_id == child.invocation_id and not found.failed
    assert found.cycle == " -> ".join(f"Counter/alice/add ({i})" for i in (holder.invocation_id, child.invocation_id, holder.invocation_id))
    assert h.status(child.invocation_id).phase is Phase.INBOXED, "reported only: the call stays queued"  # type: ignore[union-attr]
    assert h.store.get(keys.deadlock_key(child.invocation_id)) is not None


def test_with_fail_on_deadlock_the_closing_call_fails_with_508_and_its_caller_hears_it() -> None:
    h = Harness()
    holder = dataclasses.replace(invoke(COUNTER_ADD), fail_on_deadlock=True)
    h.apply(holder)
    actions, child = _call(h, holder.invocation_id, 1, COUNTER_ADD, "alice", 1)
    assert child.fail_on_deadlock, "callees inherit the policy from the log"
    (found,) = of_type(actions, DeadlockDetected)
    assert found.failed
    failed = h.status(child.invocation_id)
    assert failed is None or failed.outcome.failure.code == 508  # type: ignore[union-attr]
    (answer,) = [a.body for a in of_type(actions, SendOutbox) if isinstance(a.body, InvocationResponse)]
    assert (
        answer.outcome.failure is not None
        and answer.outcome.failure.code == 508
        and "deadlock: Counter/alice/add" in answer.outcome.failure.message
    )
    h.apply(answer)
    assert h.status(holder.invocation_id).pending_calls == (), "the answered call is no longer awaited"  # type: ignore[union-attr]


def test_a_cycle_across_two_objects_is_found_and_plain_waiting_is_not() -> None:
    h = Harness()
    other = Target("Other", "run", "bob", COUNTER_ADD.service_type, COUNTER_ADD.handler_kind)
    a = invoke(COUNTER_ADD)
    h.apply(a)
    queued_behind_a = invoke(COUNTER_ADD)
    assert not of_type(h.apply(queued_behind_a), DeadlockDetected), "a call from the ingress waiting for the key is no deadlock"
    actions, b = _call(h, a.invocation_id, 1, other, "bob", 1)  # A/alice calls Other/bob, which runs
    assert of_type(actions, InvokeAttempt) and not of_type(actions, DeadlockDetected)
    actions, back = _call(h, b.invocation_id, 1, COUNTER_ADD, "alice", 1)  # Other/bob calls Counter/alice: queued behind A
    (found,) = of_type(actions, DeadlockDetected)
    assert found.cycle.split(" -> ")[0] == f"Other/bob/run ({b.invocation_id})"
    assert [part.split(" (")[1].rstrip(")") for part in found.cycle.split(" -> ")] == [
        b.invocation_id,
        back.invocation_id,
        a.invocation_id,
        b.invocation_id,
    ]


def test_cancel_in_every_phase() -> None:
    """Queued or scheduled: ended at once (DONE); running, suspended, backing off or paused: the handler gets the cancel signal
    (ACK) and, if no attempt runs, one starts to deliver it; completed: CONFLICT."""
    h = Harness()
    scheduled = dataclasses.replace(invoke(GREETER), execute_at_ms=h.now_ms + 60_000)
    holder, inboxed = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    suspended, backing_off, paused, done = invoke(GREETER), invoke(GREETER), invoke(GREETER), retained(GREETER)
    for record in (scheduled, holder, inboxed, suspended, backing_off, paused, done):
        h.apply(record)
    h.send(suspended.invocation_id, 1, pb.SuspensionMessage(waiting_signals=[1]))
    h.apply(AttemptFailed(backing_off.invocation_id, 1, Failure(500, "boom")))
    h.apply(Pause(paused.invocation_id))
    h.send(done.invocation_id, 1, output(b"1"), pb.EndMessage())
    expected = {
        scheduled.invocation_id: (ReplyKind.DONE, False),
        inboxed.invocation_id: (ReplyKind.DONE, False),
        holder.invocation_id: (ReplyKind.ACK, False),  # running: the signal goes to the open attempt
        suspended.invocation_id: (ReplyKind.ACK, True),
        backing_off.invocation_id: (ReplyKind.ACK, True),
        paused.invocation_id: (ReplyKind.ACK, True),
        done.invocation_id: (ReplyKind.CONFLICT, False),
    }
    for invocation_id, (kind, starts_attempt) in expected.items():
        actions = h.apply(Cancel(invocation_id, ADMIN))
        assert reply_of(actions).kind is kind, invocation_id
        assert bool([a for a in of_type(actions, InvokeAttempt) if a.invocation_id == invocation_id]) is starts_attempt, invocation_id
    for queued in (scheduled, inboxed):
        status = h.status(queued.invocation_id)
        assert status is None or status.outcome.failure.code == 409  # type: ignore[union-attr]
    journal = [entry for entry in h.journal(holder.invocation_id) if entry[0] == 0xFBFF]
    assert len(journal) == 1, "the running invocation's journal has the cancel signal"
