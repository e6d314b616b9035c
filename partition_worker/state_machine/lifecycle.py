"""Applying lifecycle records: invoke, timers, cancel/kill/purge/resume, attach, signals and responses."""

from __future__ import annotations

from partition_worker import keys
from partition_worker.state_machine.context import (
    CANCEL_SIGNAL_INDEX,
    ApplyContext,
    completion_for_sink,
    set_result,
)
from partition_worker.status import InvocationStatus, Phase
from protocol import service_protocol_pb2 as pb
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
    Purge,
    Resume,
    Signal,
    Sink,
    TimerFired,
    TimerKind,
)
from wal.replies import Reply, ReplyKind

WORKFLOW_ALREADY_INVOKED = "the workflow method was already invoked"


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
    )
    input_message = pb.InputCommandMessage(headers=[pb.Header(key=k, value=v) for k, v in record.headers])
    input_message.value.SetInParent()
    input_message.value.content = record.body
    status, _ = ctx.append_entry(record.invocation_id, status, MessageType.INPUT_COMMAND, input_message.SerializeToString())
    status = status.evolve(command_count=1)
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
        ctx.fail_sink(sink, record.invocation_id, Failure(409, WORKFLOW_ALREADY_INVOKED))
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


def _not_found(ctx: ApplyContext, invocation_id: str, sink: Sink | None) -> None:
    if isinstance(sink, IngressSink):
        ctx.reply(sink, Reply(ReplyKind.NOT_FOUND, invocation_id, message=f"invocation {invocation_id} not found"))
    elif isinstance(sink, JournalSink):
        ctx.fail_sink(sink, invocation_id, Failure(404, f"invocation {invocation_id} not found"))


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
    status = ctx.status(record.invocation_id)
    if status is None:
        _not_found(ctx, record.invocation_id, record.reply_to)
        return
    if status.is_completed:
        _already_completed(ctx, record.invocation_id, record.reply_to)
        return
    if status.phase in (Phase.SCHEDULED, Phase.INBOXED):
        ctx.complete(record.invocation_id, status, Outcome(failure=Failure(409, "canceled")))
    else:
        status = deliver_signal(ctx, record.invocation_id, status, CANCEL_SIGNAL_INDEX, None, None)
        if status.phase in (Phase.PAUSED, Phase.BACKING_OFF):
            _clear_retry_timer(ctx, record.invocation_id, status)
            ctx.start_attempt(record.invocation_id, status)
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_kill(ctx: ApplyContext, record: Kill) -> None:
    status = ctx.status(record.invocation_id)
    if status is None:
        _not_found(ctx, record.invocation_id, record.reply_to)
        return
    if status.is_completed:
        _already_completed(ctx, record.invocation_id, record.reply_to)
        return
    ctx.complete(record.invocation_id, status, Outcome(failure=Failure(409, "killed")))
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_purge(ctx: ApplyContext, record: Purge) -> None:
    status = ctx.status(record.invocation_id)
    if status is None:
        _not_found(ctx, record.invocation_id, record.reply_to)
        return
    if not status.is_completed:
        if record.reply_to is not None:
            message = f"invocation {record.invocation_id} is not completed; cancel or kill it first"
            ctx.reply(record.reply_to, Reply(ReplyKind.CONFLICT, record.invocation_id, message=message))
        return
    ctx.forget(record.invocation_id, status)
    _ack(ctx, record.reply_to, record.invocation_id)


def apply_resume(ctx: ApplyContext, record: Resume) -> None:
    status = ctx.status(record.invocation_id)
    if status is None:
        _not_found(ctx, record.invocation_id, record.reply_to)
        return
    if status.phase in (Phase.PAUSED, Phase.BACKING_OFF, Phase.SUSPENDED):
        _clear_retry_timer(ctx, record.invocation_id, status)
        ctx.start_attempt(record.invocation_id, status.evolve(retry_count=0))
    _ack(ctx, record.reply_to, record.invocation_id)


def _already_completed(ctx: ApplyContext, invocation_id: str, sink: IngressSink | None) -> None:
    if sink is not None:
        message = f"The invocation '{invocation_id}' was already completed."
        ctx.reply(sink, Reply(ReplyKind.CONFLICT, invocation_id, message=message))


def _ack(ctx: ApplyContext, sink: IngressSink | None, invocation_id: str) -> None:
    if sink is not None:
        ctx.reply(sink, Reply(ReplyKind.ACK, invocation_id))


def _clear_retry_timer(ctx: ApplyContext, invocation_id: str, status: InvocationStatus) -> None:
    if status.phase is Phase.BACKING_OFF and status.next_retry_at_ms is not None:
        ctx.txn.delete(keys.timer_key(status.next_retry_at_ms, invocation_id, int(TimerKind.RETRY), status.attempt))


def apply_timer(ctx: ApplyContext, record: TimerFired) -> None:
    timer = keys.timer_key(record.fire_at_ms, record.invocation_id, int(record.timer_kind), record.ref)
    if ctx.txn.get(timer) is None:
        return  # already fired or cancelled
    ctx.txn.delete(timer)
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
        if status.phase is Phase.SCHEDULED:
            ctx.acquire_or_enqueue(record.invocation_id, status)
    elif kind is TimerKind.RETRY:
        if status.phase is Phase.BACKING_OFF and status.attempt == record.ref:
            ctx.start_attempt(record.invocation_id, status)
    elif kind is TimerKind.CLEANUP and status.is_completed and status.expires_at_ms == record.fire_at_ms:
        ctx.forget(record.invocation_id, status)  # the expiry check: a timer left by a purge before #14 must not expire a new incarnation
    elif kind is TimerKind.JOURNAL_CLEANUP and status.is_completed and status.journal_expires_at_ms == record.fire_at_ms:
        ctx.drop_journal(record.invocation_id, status)
        ctx.save(record.invocation_id, status.evolve(journal_length=0))
