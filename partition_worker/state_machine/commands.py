"""Applying what an SDK sent during an attempt: journal commands, run proposals, End, Suspension, Error."""

from __future__ import annotations

import dataclasses

from google.protobuf.message import Message

from partition_worker import keys
from partition_worker.actions import Notify
from partition_worker.state_machine.context import ApplyContext, failure_pb, outcome_from_pb, set_result, set_value_or_failure
from partition_worker.state_machine.lifecycle import deliver_signal
from partition_worker.status import InvocationStatus, Phase
from protocol import service_protocol_pb2 as pb
from protocol.error_codes import PROMISE_ALREADY_COMPLETED_MESSAGE
from protocol.error_codes import InvocationErrorCode as Code
from protocol.errors import ProtocolError
from protocol.frames import Frame, MessageType, decode_message, is_command
from protocol.ids import parse_awakeable_id
from protocol.routing import (
    callee_invocation_id,
    idempotent_invocation_id,
    partition_key_of,
    workflow_invocation_id,
)
from wal.records import (
    DEFAULT_RETRY_POLICY,
    Attach,
    AttemptEvents,
    AttemptFailed,
    AttemptFrame,
    CompletePromise,
    Failure,
    Invoke,
    JournalSink,
    OnMaxAttempts,
    Outcome,
    Signal,
    TimerKind,
)
from wal.replies import Reply, ReplyKind


class AttemptEnded(Exception):
    """Raised inside frame processing when the attempt is over (End, Suspension, Error)."""


def apply_attempt_events(ctx: ApplyContext, record: AttemptEvents) -> None:
    status = ctx.status(record.invocation_id)
    if status is None or status.phase is not Phase.INVOKED or status.attempt != record.attempt:
        return  # a late message of an attempt that is over
    changes = _pin_changes(status, record.deployment_id, record.protocol_version)
    if record.server is not None and record.server != status.last_attempt_server:
        changes["last_attempt_server"] = record.server
    if status.modified_at_ms != ctx.now_ms:
        changes["modified_at_ms"] = ctx.now_ms  # what `save` would set, in the same copy
    if changes:
        status = status.evolve(**changes)  # one copy for all (a status is copied field by field: ~2.5 us each)
    try:
        for frame in record.frames:
            status_or_none = _apply_frame(ctx, record.invocation_id, status, frame)
            if status_or_none is None:
                return
            status = status_or_none
    except AttemptEnded:
        return
    ctx.save(record.invocation_id, status)


def apply_attempt_failed(ctx: ApplyContext, record: AttemptFailed) -> None:
    status = ctx.status(record.invocation_id)
    if status is None or status.phase is not Phase.INVOKED or status.attempt != record.attempt:
        return
    status = _pin(status, record.deployment_id, record.protocol_version)
    if record.terminal:
        ctx.complete(record.invocation_id, status.evolve(last_failure=record.failure), Outcome(failure=record.failure))
        return
    fail_attempt(ctx, record.invocation_id, status, record.failure, record.retry_after_ms)


def fail_attempt(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, failure: Failure, retry_after_ms: int | None) -> None:
    """Back off and retry by the invocation's own retry policy; once it is used up, pause or kill as the policy says."""
    policy = status.retry_policy or DEFAULT_RETRY_POLICY
    retry_count = status.retry_count + 1
    if policy.exhausted(retry_count):
        status = status.evolve(retry_count=retry_count, last_failure=failure)
        if policy.on_max_attempts is OnMaxAttempts.KILL:
            ctx.complete(invocation_id, status, Outcome(failure=failure))
        else:
            ctx.save(invocation_id, status.evolve(phase=Phase.PAUSED))
        return
    delay_ms = retry_after_ms if retry_after_ms is not None else policy.delay_ms(retry_count)
    fire_at_ms = ctx.now_ms + delay_ms
    ctx.save(
        invocation_id,
        status.evolve(phase=Phase.BACKING_OFF, retry_count=retry_count, last_failure=failure, next_retry_at_ms=fire_at_ms),
    )
    ctx.set_timer(fire_at_ms, invocation_id, TimerKind.RETRY, status.attempt)


def _pin(status: InvocationStatus, deployment_id: str | None, protocol_version: int | None) -> InvocationStatus:
    changes = _pin_changes(status, deployment_id, protocol_version)
    return status.evolve(**changes) if changes else status


def _pin_changes(status: InvocationStatus, deployment_id: str | None, protocol_version: int | None) -> dict[str, object]:
    """The fields that pin an invocation to the deployment of its first attempt (none once pinned)."""
    if status.deployment_id is not None or deployment_id is None:
        return {}
    return {"deployment_id": deployment_id, "protocol_version": protocol_version}


def _apply_frame(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, frame: AttemptFrame) -> InvocationStatus | None:
    """Apply one message; None when it ended the attempt (the status is then already saved)."""
    try:
        message = decode_message(Frame(frame.message_type, frame.flags, frame.payload))
    except ProtocolError as exc:
        fail_attempt(ctx, invocation_id, status, Failure(Code.PROTOCOL_VIOLATION, f"protocol violation: {exc}"), None)
        return None
    if is_command(frame.message_type):
        if isinstance(message, pb.OutputCommandMessage):  # all it does is record the outcome: in the entry's copy of the status
            status, _ = ctx.append_entry(
                invocation_id,
                status,
                frame.message_type,
                frame.payload,
                command_count=status.command_count + 1,
                output=outcome_from_pb(message),
            )
            return status
        status, _ = ctx.append_entry(invocation_id, status, frame.message_type, frame.payload, command_count=status.command_count + 1)
        return _apply_command(ctx, invocation_id, status, message, frame)
    if isinstance(message, pb.ProposeRunCompletionMessage):
        return _propose_run(ctx, invocation_id, status, message, frame)
    if frame.message_type == MessageType.END:
        _end(ctx, invocation_id, status)
        return None
    if isinstance(message, pb.SuspensionMessage):
        _suspend(ctx, invocation_id, status, message)
        return None
    if isinstance(message, pb.ErrorMessage):
        retry_after = message.next_retry_delay if message.HasField("next_retry_delay") else None
        fail_attempt(ctx, invocation_id, status, Failure(message.code or Code.INTERNAL, message.message), retry_after)
        return None
    return status  # AwaitingOn and other hints: nothing to store


# ---------------------------------------------------------------- control


def _end(ctx: ApplyContext, invocation_id: str, status: InvocationStatus) -> None:
    outcome = status.output if status.output is not None else Outcome(value=b"")
    ctx.complete(invocation_id, status, outcome)


def _suspend(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.SuspensionMessage) -> None:
    completions: set[int] = set(message.waiting_completions)
    signals: set[int] = set(message.waiting_signals)
    named: set[str] = set(message.waiting_named_signals)
    if message.HasField("awaiting_on"):
        _collect_future(message.awaiting_on, completions, signals, named)
    if not (completions or signals or named):
        # Nothing could ever resume it (Restate fails such an attempt too, RT0012): a protocol violation, retried.
        failure = Failure(Code.PROTOCOL_VIOLATION, "protocol violation: a Suspension that waits for no completion and no signal")
        fail_attempt(ctx, invocation_id, status, failure, None)
        return
    status = status.evolve(
        phase=Phase.SUSPENDED,
        waiting_completions=tuple(sorted(completions)),
        waiting_signals=tuple(sorted(signals)),
        waiting_named_signals=tuple(sorted(named)),
    )
    available = (
        any(ctx.is_notified(invocation_id, False, c) for c in completions)
        or any(ctx.is_notified(invocation_id, True, s) for s in signals)
        or any(ctx.is_notified(invocation_id, True, n) for n in named)
    )
    if available:
        ctx.start_attempt(invocation_id, status)  # what it waits for is already there: resume at once
    else:
        ctx.save(invocation_id, status)


def _collect_future(future: pb.Future, completions: set[int], signals: set[int], named: set[str]) -> None:
    """Flatten a V7 future tree: resuming on any awaited leaf is always safe."""
    completions.update(future.waiting_completions)
    signals.update(future.waiting_signals)
    named.update(future.waiting_named_signals)
    for nested in future.nested_futures:
        _collect_future(nested, completions, signals, named)


def _propose_run(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.ProposeRunCompletionMessage, frame: AttemptFrame
) -> InvocationStatus:
    completion_id = message.result_completion_id
    if ctx.is_notified(invocation_id, False, completion_id):
        return status  # a second proposal for the same run (replayed attempt): the first one stands
    notification = pb.RunCompletionNotificationMessage(completion_id=completion_id)
    set_value_or_failure(notification, outcome_from_pb(message))
    status = ctx.add_notification(invocation_id, status, MessageType.RUN_COMPLETION, notification, completion_id=completion_id)
    if frame.flags & 0x8000 and status.phase is Phase.INVOKED:
        ack = pb.ProposeRunCompletionAckMessage(completion_id=completion_id)
        ctx.actions.append(Notify(invocation_id, status.attempt, -1, MessageType.PROPOSE_RUN_COMPLETION_ACK, ack.SerializeToString()))
    return status


# ---------------------------------------------------------------- commands


def _state_scope(status: InvocationStatus) -> tuple[str, str]:
    target = status.target
    assert target.key is not None, "state commands need a keyed target"
    return target.service, target.key


def _may_write_state(status: InvocationStatus) -> bool:
    target = status.target
    return target.key is not None and (target.takes_lock or target.is_workflow_run)


def _set_state(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.SetStateCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    if not _may_write_state(status):
        return _violation(ctx, invocation_id, status, "SetState")
    service, key = _state_scope(status)
    ctx.txn.put(keys.state_key(service, key, message.key), message.value.content)
    return status


def _clear_state(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.ClearStateCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    if not _may_write_state(status):
        return _violation(ctx, invocation_id, status, "ClearState")
    service, key = _state_scope(status)
    ctx.txn.delete(keys.state_key(service, key, message.key))
    return status


def _clear_all_state(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.ClearAllStateCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    if not _may_write_state(status):
        return _violation(ctx, invocation_id, status, "ClearAllState")
    service, key = _state_scope(status)
    ctx.txn.delete_prefix(keys.state_prefix(service, key))
    return status


def _violation(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, command: str) -> InvocationStatus:
    """A handler without write access tried to change state: fail the invocation, it cannot succeed on retry."""
    ctx.complete(
        invocation_id,
        status,
        Outcome(failure=Failure(Code.PROTOCOL_VIOLATION, f"{command} is not allowed in a {status.target.handler_kind} handler")),
    )
    raise AttemptEnded


def _get_lazy_state(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.GetLazyStateCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    notification = pb.GetLazyStateCompletionNotificationMessage(completion_id=message.result_completion_id)
    value = None
    if status.target.key is not None:
        service, key = _state_scope(status)
        value = ctx.txn.get(keys.state_key(service, key, message.key))
    if value is None:
        notification.void.SetInParent()
    else:
        notification.value.content = value
    return ctx.add_notification(
        invocation_id, status, MessageType.GET_LAZY_STATE_COMPLETION, notification, completion_id=message.result_completion_id
    )


def _get_lazy_state_keys(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.GetLazyStateKeysCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    notification = pb.GetLazyStateKeysCompletionNotificationMessage(completion_id=message.result_completion_id)
    notification.state_keys.SetInParent()
    if status.target.key is not None:
        service, key = _state_scope(status)
        prefix = keys.state_prefix(service, key)
        notification.state_keys.keys.extend(keys.state_name_of(row, prefix) for row, _ in ctx.txn.scan(prefix))
    return ctx.add_notification(
        invocation_id, status, MessageType.GET_LAZY_STATE_KEYS_COMPLETION, notification, completion_id=message.result_completion_id
    )


def _sleep(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.SleepCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    ctx.set_timer(message.wake_up_time, invocation_id, TimerKind.SLEEP, message.result_completion_id)
    return status.evolve(pending_sleeps=(*status.pending_sleeps, (message.wake_up_time, message.result_completion_id)))


def _call(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.CallCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    sink = JournalSink(invocation_id, message.result_completion_id, MessageType.CALL_COMPLETION)
    return _invoke_other(ctx, invocation_id, status, message, frame, sink, invoke_time_ms=None)


def _one_way_call(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.OneWayCallCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    invoke_time = message.invoke_time if message.invoke_time > 0 else None
    return _invoke_other(ctx, invocation_id, status, message, frame, None, invoke_time_ms=invoke_time)


def _invoke_other(
    ctx: ApplyContext,
    invocation_id: str,
    status: InvocationStatus,
    message: pb.CallCommandMessage | pb.OneWayCallCommandMessage,
    frame: AttemptFrame,
    sink: JournalSink | None,
    invoke_time_ms: int | None,
) -> InvocationStatus:
    """Send an Invoke for a call or one-way call, and tell the caller the callee's id."""
    target = frame.call_target
    idempotency_key = message.idempotency_key if message.HasField("idempotency_key") else None
    key = message.key or None
    if target is not None and target.is_workflow_run:
        callee_id = workflow_invocation_id(message.service_name, message.key)
    elif idempotency_key is not None:
        callee_id = idempotent_invocation_id(message.service_name, key, message.handler_name, idempotency_key)
    else:
        callee_id = callee_invocation_id(invocation_id, status.command_count, key)
    id_notification = pb.CallInvocationIdCompletionNotificationMessage(
        completion_id=message.invocation_id_notification_idx, invocation_id=callee_id
    )
    status = ctx.add_notification(
        invocation_id,
        status,
        MessageType.CALL_INVOCATION_ID_COMPLETION,
        id_notification,
        completion_id=message.invocation_id_notification_idx,
    )
    if target is None:
        if sink is not None:
            failure = Failure(Code.NOT_FOUND, f"service {message.service_name!r} or its handler {message.handler_name!r} is not registered")
            ctx.fail_sink(sink, callee_id, failure)
        return status
    retention = frame.call_retention_ms
    if retention is None:
        retention = _legacy_retention_ms(target.is_workflow_run, idempotency_key)
    invoke = Invoke(
        invocation_id=callee_id,
        target=dataclasses.replace(target, key=key if target.is_keyed else None),
        body=message.parameter,
        headers=tuple((h.key, h.value) for h in message.headers),
        idempotency_key=idempotency_key,
        execute_at_ms=invoke_time_ms,
        response_sink=sink,
        completion_retention_ms=retention,
        invoked_by_id=invocation_id,
        invoked_by_target=status.target.path,
        fail_on_deadlock=status.fail_on_deadlock,
        retry_policy=frame.call_retry_policy,
        journal_retention_ms=min(frame.call_journal_retention_ms or 0, retention),
    )
    ctx.send(partition_key_of(callee_id), invoke)
    if sink is not None:  # the caller now waits for the callee (an edge of the wait-for graph, see deadlocks.py)
        status = status.evolve(pending_calls=(*status.pending_calls, (sink.completion_id, callee_id)))
    return status


_LEGACY_RUN_RETENTION_MS = 24 * 60 * 60 * 1000
_LEGACY_CALL_RETENTION_MS = 60 * 60 * 1000


def _legacy_retention_ms(is_workflow_run: bool, idempotency_key: str | None) -> int:
    """Retention of a callee whose Call frame carries none (written before #14): the node defaults of that time, fixed here."""
    if is_workflow_run or idempotency_key is not None:
        return _LEGACY_RUN_RETENTION_MS
    return _LEGACY_CALL_RETENTION_MS


def _send_signal(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.SendSignalCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    which = message.WhichOneof("signal_id")
    outcome = _signal_outcome(message)
    signal = Signal(
        invocation_id=message.target_invocation_id,
        signal_index=message.idx if which == "idx" else None,
        signal_name=message.name if which == "name" else None,
        outcome=outcome,
    )
    ctx.send(partition_key_of(message.target_invocation_id), signal)
    return status


def _signal_outcome(message: pb.SendSignalCommandMessage) -> Outcome | None:
    which = message.WhichOneof("result")
    if which == "value":
        return Outcome(value=message.value.content)
    if which == "failure":
        return Outcome(failure=Failure(message.failure.code, message.failure.message))
    return None


def _complete_awakeable(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.CompleteAwakeableCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    try:
        target_id, signal_index = parse_awakeable_id(message.awakeable_id)
    except ValueError:
        return status  # an id that names nothing: the completion has nowhere to go
    which = message.WhichOneof("result")
    if which == "failure":
        outcome = Outcome(failure=Failure(message.failure.code, message.failure.message))
    else:
        outcome = Outcome(value=message.value.content)
    target = str(target_id)
    if target == invocation_id:
        return deliver_signal(ctx, invocation_id, status, signal_index, None, outcome)
    ctx.send(target_id.partition_key, Signal(target, signal_index, None, outcome))
    return status


def _attach_target_id(message: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage) -> str:
    which = message.WhichOneof("target")
    if which == "invocation_id":
        return message.invocation_id
    if which == "workflow_target":
        return workflow_invocation_id(message.workflow_target.workflow_name, message.workflow_target.workflow_key)
    target = message.idempotent_request_target
    key = target.service_key if target.HasField("service_key") else None
    return idempotent_invocation_id(target.service_name, key, target.handler_name, target.idempotency_key)


def _attach(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.AttachInvocationCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    target_id = _attach_target_id(message)
    sink = JournalSink(invocation_id, message.result_completion_id, MessageType.ATTACH_INVOCATION_COMPLETION)
    ctx.send(partition_key_of(target_id), Attach(target_id, sink, block=True))
    return status


def _get_output(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.GetInvocationOutputCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    target_id = _attach_target_id(message)
    sink = JournalSink(invocation_id, message.result_completion_id, MessageType.GET_INVOCATION_OUTPUT_COMPLETION)
    ctx.send(partition_key_of(target_id), Attach(target_id, sink, block=False))
    return status


# ---------------------------------------------------------------- promises


def _promise_row(status: InvocationStatus, name: str) -> bytes:
    target = status.target
    assert target.key is not None, "promises belong to a keyed workflow"
    return keys.promise_key(target.service, target.key, name)


def _get_promise(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.GetPromiseCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    from partition_worker.state_machine.promises import Promise

    row = _promise_row(status, message.key)
    promise = Promise.load(ctx.txn.get(row))
    if promise.outcome is not None:
        notification = pb.GetPromiseCompletionNotificationMessage(completion_id=message.result_completion_id)
        set_value_or_failure(notification, promise.outcome)
        return ctx.add_notification(
            invocation_id, status, MessageType.GET_PROMISE_COMPLETION, notification, completion_id=message.result_completion_id
        )
    ctx.txn.put(row, promise.with_waiter(invocation_id, message.result_completion_id).dump())
    return status


def _peek_promise(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.PeekPromiseCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    from partition_worker.state_machine.promises import Promise

    promise = Promise.load(ctx.txn.get(_promise_row(status, message.key)))
    notification = pb.PeekPromiseCompletionNotificationMessage(completion_id=message.result_completion_id)
    set_result(notification, promise.outcome)
    return ctx.add_notification(
        invocation_id, status, MessageType.PEEK_PROMISE_COMPLETION, notification, completion_id=message.result_completion_id
    )


def _complete_promise(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: pb.CompletePromiseCommandMessage, frame: AttemptFrame
) -> InvocationStatus:
    from partition_worker.state_machine.promises import Promise

    row = _promise_row(status, message.key)
    promise = Promise.load(ctx.txn.get(row))
    answer = pb.CompletePromiseCompletionNotificationMessage(completion_id=message.result_completion_id)
    if promise.outcome is not None:
        answer.failure.CopyFrom(failure_pb(Failure(Code.CONFLICT, PROMISE_ALREADY_COMPLETED_MESSAGE)))
    else:
        which = message.WhichOneof("completion")
        if which == "completion_failure":
            outcome = Outcome(failure=Failure(message.completion_failure.code, message.completion_failure.message))
        else:
            outcome = Outcome(value=message.completion_value.content)
        ctx.txn.put(row, Promise(outcome, ()).dump())
        status = _wake_promise_waiters(ctx, invocation_id, status, promise.waiters, outcome)
        answer.void.SetInParent()
    return ctx.add_notification(
        invocation_id, status, MessageType.COMPLETE_PROMISE_COMPLETION, answer, completion_id=message.result_completion_id
    )


def _wake_promise_waiters(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, waiters: tuple[tuple[str, int], ...], outcome: Outcome
) -> InvocationStatus:
    """Complete every GetPromise waiting on this promise; returns the (maybe updated) status of `invocation_id`."""
    for waiter_id, completion_id in waiters:
        if waiter_id == invocation_id:
            updated = _notify_promise_waiter(ctx, waiter_id, status, completion_id, outcome)
            assert updated is not None, "the completing invocation has a status"
            status = updated
        else:
            ctx.save(invocation_id, status)
            _notify_promise_waiter(ctx, waiter_id, ctx.status(waiter_id), completion_id, outcome)
    return status


def _notify_promise_waiter(
    ctx: ApplyContext, waiter_id: str, waiter_status: InvocationStatus | None, completion_id: int, outcome: Outcome
) -> InvocationStatus | None:
    """Deliver a promise's outcome to one waiting GetPromise (nothing if the waiter is gone or done); the waiter's new status."""
    if waiter_status is None or waiter_status.is_completed:
        return waiter_status
    notification = pb.GetPromiseCompletionNotificationMessage(completion_id=completion_id)
    set_value_or_failure(notification, outcome)
    return ctx.add_notification(waiter_id, waiter_status, MessageType.GET_PROMISE_COMPLETION, notification, completion_id=completion_id)


def apply_complete_promise(ctx: ApplyContext, body: CompletePromise) -> None:
    """A workflow promise completed from outside (the admin API): store the outcome, wake its waiters, tell the caller."""
    from partition_worker.state_machine.promises import Promise

    row = keys.promise_key(body.service, body.key, body.promise)
    promise = Promise.load(ctx.txn.get(row))
    if promise.outcome is not None:
        if body.reply_to is not None:
            message = f"the promise '{body.promise}' of {body.service}/{body.key} is already completed"
            ctx.reply(body.reply_to, Reply(ReplyKind.CONFLICT, "", message=message))
        return
    ctx.txn.put(row, Promise(body.outcome, ()).dump())
    for waiter_id, completion_id in promise.waiters:
        _notify_promise_waiter(ctx, waiter_id, ctx.status(waiter_id), completion_id, body.outcome)
    if body.reply_to is not None:
        ctx.reply(body.reply_to, Reply(ReplyKind.DONE, ""))


def _apply_command(
    ctx: ApplyContext, invocation_id: str, status: InvocationStatus, message: Message, frame: AttemptFrame
) -> InvocationStatus:
    """Apply a journaled command by its message class; a command with nothing to apply (Input, Run) is only journaled."""
    match message:
        case pb.SetStateCommandMessage():
            return _set_state(ctx, invocation_id, status, message, frame)
        case pb.ClearStateCommandMessage():
            return _clear_state(ctx, invocation_id, status, message, frame)
        case pb.ClearAllStateCommandMessage():
            return _clear_all_state(ctx, invocation_id, status, message, frame)
        case pb.GetLazyStateCommandMessage():
            return _get_lazy_state(ctx, invocation_id, status, message, frame)
        case pb.GetLazyStateKeysCommandMessage():
            return _get_lazy_state_keys(ctx, invocation_id, status, message, frame)
        case pb.SleepCommandMessage():
            return _sleep(ctx, invocation_id, status, message, frame)
        case pb.CallCommandMessage():
            return _call(ctx, invocation_id, status, message, frame)
        case pb.OneWayCallCommandMessage():
            return _one_way_call(ctx, invocation_id, status, message, frame)
        case pb.SendSignalCommandMessage():
            return _send_signal(ctx, invocation_id, status, message, frame)
        case pb.CompleteAwakeableCommandMessage():
            return _complete_awakeable(ctx, invocation_id, status, message, frame)
        case pb.AttachInvocationCommandMessage():
            return _attach(ctx, invocation_id, status, message, frame)
        case pb.GetInvocationOutputCommandMessage():
            return _get_output(ctx, invocation_id, status, message, frame)
        case pb.GetPromiseCommandMessage():
            return _get_promise(ctx, invocation_id, status, message, frame)
        case pb.PeekPromiseCommandMessage():
            return _peek_promise(ctx, invocation_id, status, message, frame)
        case pb.CompletePromiseCommandMessage():
            return _complete_promise(ctx, invocation_id, status, message, frame)
        case _:
            return status
