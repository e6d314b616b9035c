"""Applying lifecycle records: invoke, timers, cancel/kill/pause/resume/purge/restart-as-new, attach, signals and responses.

The admin commands answer with Restate's outcomes (`wal.replies.ReplyKind`),
which the admin API turns into Restate 1.7's status codes.
"""

from __future__ import annotations

from partition_worker import keys
from partition_worker.actions import AbortAttempt
from partition_worker.state_machine.context import (
    CANCEL_SIGNAL_INDEX,
    ApplyContext,
    completion_for_sink,
    set_result,
)
from partition_worker.status import BackingOff, InvocationStatus, Phase, Scheduled
from protocol import service_protocol_pb2 as pb
from protocol.error_codes import CANCELED_MESSAGE, KILLED_MESSAGE, WORKFLOW_ALREADY_INVOKED_MESSAGE
from protocol.error_codes import InvocationErrorCode as Code
from protocol.frames import MessageType
from protocol.routing import partition_key_of
from wal.records import (
    Attach,
    Cancel,
    Failure,
    IngressSink,
    InvocationResponse,
    Invoke,
    JournalSink,
    Kill,
    Outcome,
    Pause,
    Purge,
    PurgeJournal,
    RestartAsNew,
    Resume,
    Signal,
    Sink,
    TimerFired,
    TimerKind,
)
from wal.replies import Reply, ReplyKind

WORKFLOW_ALREADY_INVOKED = WORKFLOW_ALREADY_INVOKED_MESSAGE


def apply_invoke(ctx: ApplyContext, record: Invoke) -> None:
    existing = ctx.status(record.invocation_id)
    if existing is not None:
        _invoke_existing(ctx, record, existing)
        return
    status = InvocationStatus(
        phase=Phase.SCHEDULED,
        target=record.target,
        created_at_ms=ctx.now_ms,
        modified_at_ms=ctx.now_ms,
        response_sinks=(record.response_sink,) if record.response_sink is not None else (),
        idempotency_key=record.idempotency_key,
        completion_retention_ms=record.completion_retention_ms,
        journal_retention_ms=min(record.journal_retention_ms, record.completion_retention_ms),
        execute_at_ms=record.execute_at_ms,
        invoked_by_id=record.invoked_by_id,
        invoked_by_target=record.invoked_by_target,
        restarted_from=record.restarted_from,
        retry_policy=record.retry_policy,
        fail_on_deadlock=record.fail_on_deadlock,
    )
    input_message = pb.InputCommandMessage(headers=[pb.Header(key=k, value=v) for k, v in record.headers])
    input_message.value.SetInParent()
    input_message.value.content = record.body
    status, _ = ctx.append_entry(
        record.invocation_id, status, MessageType.INPUT_COMMAND, input_message.SerializeToString(), command_count=1
    )
    if record.submit_sink is not None:
        ctx.reply(record.submit_sink, Reply(ReplyKind.SUBMITTED, record.invocation_id))
    if record.execute_at_ms is not None and record.execute_at_ms > ctx.now_ms:
        ctx.save(record.invocation_id, status)
        ctx.set_timer(record.execute_at_ms, record.invocation_id, TimerKind.DELAYED_INVOKE, 0)
        return
    ctx.acquire_or_enqueue(record.invocation_id, status)


def _invoke_existing(ctx: ApplyContext, record: Invoke, status: InvocationStatus) -> None:
    """A second Invoke for a known id: an idempotent retry, a workflow started twice, or a duplicate."""
    if record.submit_sink is not None:
        ctx.reply(record.submit_sink, Reply(ReplyKind.SUBMITTED, record.invocation_id, previously_accepted=True))
    sink = record.response_sink
    if sink is None:
        return
    if record.target.is_workflow_run and record.idempotency_key is None:
        ctx.fail_sink(sink, record.invocation_id, Failure(Code.CONFLICT, WORKFLOW_ALREADY_INVOKED))
        return
    _attach_sink(ctx, record.invocation_id, status, sink)


def _attach_sink(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, sink: Sink) -> None:
    if status.is_completed:
        assert status.outcome is not None, "a completed invocation has an outcome"
        ctx.deliver_outcome(sink, invocation_id, status.outcome, status.expires_at_ms, status.target)
        return
    if sink in status.response_sinks:
        return  # the same waiter asking again (a nudge after a lost reply)
    ctx.save(invocation_id, status.evolve(response_sinks=(*status.response_sinks, sink)))


def apply_attach(ctx: ApplyContext, record: Attach) -> None:
    status = ctx.status(record.invocation_id)
    if status is None:
        _not_found(ctx, record.invocation_id, record.sink)
        return
    if status.is_completed or record.block:
        _attach_sink(ctx, record.invocation_id, status, record.sink)
        return
    if isinstance(record.sink, IngressSink):
        ctx.reply(record.sink, Reply(ReplyKind.NOT_READY, record.invocation_id))
    else:
        _not_ready_to_journal(ctx, record.sink, record.invocation_id)


def _existing(ctx: ApplyContext, invocation_id: str, sink: Sink | None) -> InvocationStatus | None:
    """The invocation's status; if there is none, `sink` hears NOT_FOUND and the result is None."""
    status = ctx.status(invocation_id)
    if status is None:
        _not_found(ctx, invocation_id, sink)
    return status


def _not_found(ctx: ApplyContext, invocation_id: str, sink: Sink | None) -> None:
    if isinstance(sink, IngressSink):
        ctx.reply(sink, Reply(ReplyKind.NOT_FOUND, invocation_id, message=f"invocation {invocation_id} not found"))
    elif isinstance(sink, JournalSink):
        ctx.fail_sink(sink, invocation_id, Failure(Code.NOT_FOUND, f"invocation {invocation_id} not found"))


def _not_ready_to_journal(ctx: ApplyContext, sink: JournalSink, invocation_id: str) -> None:
    """GetInvocationOutput of a running invocation: an empty outcome, which the receiver turns into a void notification."""
    ctx.send(partition_key_of(sink.invocation_id), InvocationResponse(sink, Outcome(value=None, failure=None), invocation_id))


def apply_invocation_response(ctx: ApplyContext, record: InvocationResponse) -> None:
    """A result for a journal waiting on a call, attach or output: becomes a notification."""
    sink = record.sink
    status = ctx.status(sink.invocation_id)
    if status is None or status.is_completed:
        return
    outcome: Outcome | None = record.outcome
    if outcome is not None and outcome.value is None and outcome.failure is None:
        outcome = None  # "not ready" for GetInvocationOutput
    message = completion_for_sink(sink, outcome)
    if sink.notification_type == MessageType.CALL_COMPLETION and status.pending_calls:
        status = status.evolve(pending_calls=tuple(call for call in status.pending_calls if call[0] != sink.completion_id))
    ctx.add_notification(sink.invocation_id, status, sink.notification_type, message, completion_id=sink.completion_id)


def apply_signal(ctx: ApplyContext, record: Signal) -> None:
    status = ctx.status(record.invocation_id)
    if status is None or status.is_completed:
        if record.reply_to is not None:
            _not_found(ctx, record.invocation_id, record.reply_to)
        return
    deliver_signal(ctx, record.invocation_id, status, record.signal_index, record.signal_name, record.outcome)
    if record.reply_to is not None:
        ctx.reply(record.reply_to, Reply(ReplyKind.ACK, record.invocation_id))


def deliver_signal(
    ctx: ApplyContext,
    invocation_id: str,
    status: InvocationStatus,
    signal_index: int | None,
    signal_name: str | None,
    outcome: Outcome | None,
) -> InvocationStatus:
    message = pb.SignalNotificationMessage()
    if signal_name is not None:
        message.name = signal_name
    else:
        message.idx = signal_index or 0
    set_result(message, outcome)
    signal: int | str = signal_name if signal_name is not None else (signal_index or 0)
    return ctx.add_notification(invocation_id, status, MessageType.SIGNAL, message, signal=signal)


def apply_cancel(ctx: ApplyContext, record: Cancel) -> None:
    status = _existing(ctx, record.invocation_id, record.reply_to)
    if status is None:
        return
    if status.is_completed:
        _already_completed(ctx, record.invocation_id, record.reply_to)
        return
    if status.phase in (Phase.SCHEDULED, Phase.INBOXED):
        ctx.complete(record.invocation_id, status, Outcome(failure=Failure(Code.ABORTED, CANCELED_MESSAGE)))
        _reply(ctx, record.reply_to, record.invocation_id, ReplyKind.DONE)  # it never ran: cancelled at once
        return
    status = deliver_signal(ctx, record.invocation_id, status, CANCEL_SIGNAL_INDEX, None, None)
    if status.phase in (Phase.PAUSED, Phase.BACKING_OFF):
        _clear_retry_timer(ctx, record.invocation_id, status)
        ctx.start_attempt(record.invocation_id, status)
    _ack(ctx, record.reply_to, record.invocation_id)  # the handler sees the cancel signal and ends itself


def apply_kill(ctx: ApplyContext, record: Kill) -> None:
    status = _existing(ctx, record.invocation_id, record.reply_to)
    if status is None:
        return
    if status.is_completed:
        _already_completed(ctx, record.invocation_id, record.reply_to)
        return
    kill(ctx, record.invocation_id, status)
    _ack(ctx, record.reply_to, record.invocation_id)


def kill(ctx: ApplyContext, invocation_id: str, status: InvocationStatus) -> None:
    """End an invocation with 409 "killed", its children first (as Restate's kill does).

    The children are the invocations it called or sent to: their ids are in the
    journal's CallInvocationId notifications. A child on this partition is
    killed in this same apply, before the parent releases its key, so a
    self-call queued behind its caller never takes the key; a child elsewhere
    (or not yet arrived) gets a Kill through the outbox, after its Invoke.
    """
    for message_type, payload in ctx.journal_entries(invocation_id):
        if message_type != MessageType.CALL_INVOCATION_ID_COMPLETION:
            continue
        child = pb.CallInvocationIdCompletionNotificationMessage.FromString(payload).invocation_id
        child_status = ctx.status(child)
        if child_status is None:
            ctx.send(partition_key_of(child), Kill(child))
        elif not child_status.is_completed:
            kill(ctx, child, child_status)
    ctx.complete(invocation_id, status, Outcome(failure=Failure(Code.KILLED, KILLED_MESSAGE)))


def apply_purge(ctx: ApplyContext, record: Purge) -> None:
    status = _existing(ctx, record.invocation_id, record.reply_to)
    if status is None:
        return
    if not status.is_completed:
        _reply(
            ctx, record.reply_to, record.invocation_id, ReplyKind.CONFLICT, f"The invocation '{record.invocation_id}' is not yet completed."
        )
        return
    ctx.forget(record.invocation_id, status)
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_purge_journal(ctx: ApplyContext, record: PurgeJournal) -> None:
    status = _existing(ctx, record.invocation_id, record.reply_to)
    if status is None:
        return
    if not status.is_completed:
        _reply(
            ctx, record.reply_to, record.invocation_id, ReplyKind.CONFLICT, f"The invocation '{record.invocation_id}' is not yet completed."
        )
        return
    journal_expires_at_ms = status.journal_expires_at_ms
    if journal_expires_at_ms is not None:
        ctx.remove_timer(journal_expires_at_ms, record.invocation_id, TimerKind.JOURNAL_CLEANUP, 0)
    ctx.drop_journal(record.invocation_id, status)
    ctx.save(record.invocation_id, status.evolve(journal_length=0, command_count=0))
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_pause(ctx: ApplyContext, record: Pause) -> None:
    """Stop a running, backing-off or suspended invocation where it is; it stays paused until resumed (or cancelled, or killed)."""
    status = _existing(ctx, record.invocation_id, record.reply_to)
    if status is None:
        return
    if status.phase is Phase.PAUSED:
        _reply(ctx, record.reply_to, record.invocation_id, ReplyKind.DONE)
        return
    if status.phase not in (Phase.INVOKED, Phase.BACKING_OFF, Phase.SUSPENDED):
        _reply(
            ctx,
            record.reply_to,
            record.invocation_id,
            ReplyKind.CONFLICT,
            f"The invocation '{record.invocation_id}' is not running, cannot be paused.",
        )
        return
    if status.phase is Phase.INVOKED:
        ctx.actions.append(AbortAttempt(record.invocation_id, status.attempt))
    _clear_retry_timer(ctx, record.invocation_id, status)
    ctx.save(record.invocation_id, status.evolve(phase=Phase.PAUSED, next_retry_at_ms=None))
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_resume(ctx: ApplyContext, record: Resume) -> None:
    """Start the next attempt of a paused, suspended or backing-off invocation now (optionally on another deployment)."""
    invocation_id = record.invocation_id
    status = _existing(ctx, invocation_id, record.reply_to)
    if status is None:
        return
    if status.is_completed:
        _reply(
            ctx, record.reply_to, invocation_id, ReplyKind.CONFLICT, f"The invocation '{invocation_id}' is completed, cannot be resumed."
        )
        return
    if status.phase in (Phase.SCHEDULED, Phase.INBOXED):
        message = f"The invocation '{invocation_id}' is either inboxed or scheduled, cannot be resumed."
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.NOT_READY, message)
        return
    if record.deployment_id is not None:
        refusal = _deployment_change_refusal(invocation_id, status, record)
        if refusal is not None:
            _reply(ctx, record.reply_to, invocation_id, *refusal)
            return
        status = status.evolve(deployment_id=record.deployment_id)
    if status.phase in (Phase.PAUSED, Phase.BACKING_OFF, Phase.SUSPENDED):
        _clear_retry_timer(ctx, invocation_id, status)
        ctx.start_attempt(invocation_id, status.evolve(retry_count=0))
    _ack(ctx, record.reply_to, invocation_id)


def _deployment_change_refusal(invocation_id: str, status: InvocationStatus, record: Resume) -> tuple[ReplyKind, str] | None:
    if status.phase not in (Phase.PAUSED, Phase.SUSPENDED) or status.deployment_id is None:
        message = (
            f"The invocation '{invocation_id}' is still running or the deployment id is not pinned yet, deployment id cannot be changed."
        )
        return ReplyKind.CONFLICT, message
    version = status.protocol_version or 0
    if not record.deployment_min_protocol_version <= version <= record.deployment_max_protocol_version:
        message = (
            f"The invocation '{invocation_id}' is running on protocol version '{version}', while the chosen deployment"
            f" '{record.deployment_id}' supports the range {record.deployment_min_protocol_version}..={record.deployment_max_protocol_version}."
        )
        return ReplyKind.INVALID, message
    return None


def apply_restart_as_new(ctx: ApplyContext, record: RestartAsNew) -> None:
    """Start a completed invocation again, from its input, as a new invocation on the same partition."""
    invocation_id = record.invocation_id
    status = _existing(ctx, invocation_id, record.reply_to)
    if status is None:
        return
    if status.phase in (Phase.SCHEDULED, Phase.INBOXED):
        message = f"The invocation '{invocation_id}' cannot be restarted because it's not running yet."
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.NOT_READY, message)
        return
    if not status.is_completed:
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.CONFLICT, f"The invocation '{invocation_id}' is still running.")
        return
    if status.target.is_workflow_run:
        message = f"Restarting the invocation '{invocation_id}' is not supported. Restarting workflows is not supported."
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.UNSUPPORTED, message)
        return
    raw_input = ctx.txn.get(keys.journal_key(invocation_id, 0)) if status.journal_length > 0 else None
    if raw_input is None:
        message = (
            f"The invocation '{invocation_id}' cannot be restarted because the input is not available. This indicates that"
            " the journal was already purged, or not retained at all."
        )
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.GONE, message)
        return
    if ctx.status(record.new_invocation_id) is not None:
        _reply(ctx, record.reply_to, invocation_id, ReplyKind.CONFLICT, f"The invocation '{record.new_invocation_id}' already exists.")
        return
    restarted = InvocationStatus(
        phase=Phase.SCHEDULED,
        target=status.target,
        created_at_ms=ctx.now_ms,
        modified_at_ms=ctx.now_ms,
        completion_retention_ms=status.completion_retention_ms,
        restarted_from=invocation_id,
        retry_policy=status.retry_policy,
        fail_on_deadlock=status.fail_on_deadlock,
    )
    ctx.txn.put(keys.journal_key(record.new_invocation_id, 0), raw_input)
    ctx.acquire_or_enqueue(record.new_invocation_id, restarted.evolve(journal_length=1, command_count=1))
    if record.reply_to is not None:
        ctx.reply(record.reply_to, Reply(ReplyKind.ACK, invocation_id, new_invocation_id=record.new_invocation_id))


def _already_completed(ctx: ApplyContext, invocation_id: str, sink: IngressSink | None) -> None:
    _reply(ctx, sink, invocation_id, ReplyKind.CONFLICT, f"The invocation '{invocation_id}' was already completed.")


def _ack(ctx: ApplyContext, sink: IngressSink | None, invocation_id: str) -> None:
    _reply(ctx, sink, invocation_id, ReplyKind.ACK)


def _reply(ctx: ApplyContext, sink: IngressSink | None, invocation_id: str, kind: ReplyKind, message: str = "") -> None:
    if sink is not None:
        ctx.reply(sink, Reply(kind, invocation_id, message=message))


def _clear_retry_timer(ctx: ApplyContext, invocation_id: str, status: InvocationStatus) -> None:
    if isinstance(state := status.state, BackingOff):
        ctx.remove_timer(state.next_retry_at_ms, invocation_id, TimerKind.RETRY, state.attempt)


def apply_timer(ctx: ApplyContext, record: TimerFired) -> None:
    if not ctx.remove_timer(record.fire_at_ms, record.invocation_id, record.timer_kind, record.ref):
        return  # already fired or cancelled
    status = ctx.status(record.invocation_id)
    if status is None:
        return
    kind = record.timer_kind
    if kind is TimerKind.SLEEP:
        if not status.is_completed:
            pending = tuple(sleep for sleep in status.pending_sleeps if sleep != (record.fire_at_ms, record.ref))
            message = pb.SleepCompletionNotificationMessage(completion_id=record.ref)
            message.void.SetInParent()
            status = status.evolve(pending_sleeps=pending)
            ctx.add_notification(record.invocation_id, status, MessageType.SLEEP_COMPLETION, message, completion_id=record.ref)
    elif kind is TimerKind.DELAYED_INVOKE:
        if isinstance(status.state, Scheduled):
            ctx.acquire_or_enqueue(record.invocation_id, status)
    elif kind is TimerKind.RETRY:
        state = status.state
        if isinstance(state, BackingOff) and state.attempt == record.ref:
            ctx.start_attempt(record.invocation_id, status)
    elif kind is TimerKind.CLEANUP and status.is_completed and status.expires_at_ms == record.fire_at_ms:
        ctx.forget(record.invocation_id, status)  # the expiry check: a timer left by a purge before #14 must not expire a new incarnation
    elif kind is TimerKind.JOURNAL_CLEANUP and status.is_completed and status.journal_expires_at_ms == record.fire_at_ms:
        ctx.drop_journal(record.invocation_id, status)
        ctx.save(record.invocation_id, status.evolve(journal_length=0))
