"""The apply context: one record's view of partition state, and the primitives every step shares.

It wraps the write transaction and collects actions. It owns the journal
(append entries, record notifications and deliver them), attempts (start,
resume), completion (outcome to waiters, lock hand-over, retention) and the
outbox. Nothing here reads a clock or does I/O: `now_ms` comes from the record.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, assert_never

import msgpack
from google.protobuf.message import Message

from partition_worker import keys
from partition_worker.actions import (
    AbortAttempt,
    Action,
    InvokeAttempt,
    Notify,
    ReplyToIngress,
    ScheduleTimer,
    SendOutbox,
)
from partition_worker.state_machine import counts
from partition_worker.state_machine.config import StateMachineConfig
from partition_worker.state_machine.deadlocks import check_queued_call
from partition_worker.status import BackingOff, Completed, Inboxed, InvocationStatus, Invoked, Paused, Phase, Scheduled, Suspended
from partition_worker.store import Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from protocol.routing import partition_key_of
from protocol.state_version import state_version
from wal.records import (
    Failure,
    IngressSink,
    InvocationResponse,
    JournalSink,
    Outcome,
    PatchState,
    RecordBody,
    Sink,
    Target,
    TimerKind,
)
from wal.replies import Reply, ReplyKind

CANCEL_SIGNAL_INDEX = 1


class ApplyContext:
    def __init__(self, txn: Transaction, config: StateMachineConfig, now_ms: int) -> None:
        self.txn = txn
        self.config = config
        self.now_ms = now_ms
        self.actions: list[Action] = []

    # ------------------------------------------------------------ statuses

    def status(self, invocation_id: str) -> InvocationStatus | None:
        return self.txn.get_object(keys.invocation_key(invocation_id), InvocationStatus.decode)

    def save(self, invocation_id: str, status: InvocationStatus) -> InvocationStatus:
        """Store a status, and keep the running index (`keys.Table.RUNNING`) in step with its phase."""
        if status.modified_at_ms != self.now_ms:
            status = status.evolve(modified_at_ms=self.now_ms)
        row = keys.invocation_key(invocation_id)
        previous = self.txn.cached_object(row)
        running = status.phase is Phase.INVOKED
        if not isinstance(previous, InvocationStatus) or (previous.phase is Phase.INVOKED) != running:
            self.mark_running(invocation_id, running)
        self.txn.put_object(row, status)
        return status

    def mark_running(self, invocation_id: str, running: bool) -> None:
        """Add an invocation to the running index or take it out, moving the running count only when a row was added or removed."""
        row = keys.running_key(invocation_id)
        if self.txn.insert(row, b"") if running else self.txn.remove(row):
            counts.add_if_counted(self.txn, keys.RUNNING_COUNT, 1 if running else -1)

    def counter(self, key: bytes) -> int:
        """Return and advance a partition-wide sequence stored at `key`."""
        raw = self.txn.get(key)
        value = keys.decode_u64(raw) if raw is not None else 1
        self.txn.put(key, keys.encode_u64(value + 1))
        return value

    # ------------------------------------------------------------ journal

    def append_entry(
        self, invocation_id: str, status: InvocationStatus, message_type: int, payload: bytes, **changes: object
    ) -> tuple[InvocationStatus, int]:
        """Store a journal entry; the status one entry longer, with `changes` applied in the same copy."""
        index = status.journal_length
        self.txn.put(keys.journal_key(invocation_id, index), msgpack.packb([message_type, payload]))
        return status.evolve(journal_length=index + 1, retry_count=0, **changes), index

    def add_notification(
        self,
        invocation_id: str,
        status: InvocationStatus,
        message_type: int,
        message: Message,
        *,
        completion_id: int | None = None,
        signal: int | str | None = None,
    ) -> InvocationStatus:
        """Store a notification in the journal, then deliver it (running attempt) or resume (suspended and awaited)."""
        payload = message.SerializeToString()
        status, index = self.append_entry(invocation_id, status, message_type, payload)
        if completion_id is not None:
            self.txn.put(keys.notified_key(invocation_id, False, completion_id), b"")
        if signal is not None:
            self.txn.put(keys.notified_key(invocation_id, True, signal), b"")
        if status.phase is Phase.INVOKED:
            self.actions.append(Notify(invocation_id, status.attempt, index, message_type, payload))
        elif status.phase is Phase.SUSPENDED and _awaits(status, completion_id, signal):
            status = self.start_attempt(invocation_id, status)
        return self.save(invocation_id, status)

    def is_notified(self, invocation_id: str, signal: bool, ident: int | str) -> bool:
        return self.txn.get(keys.notified_key(invocation_id, signal, ident)) is not None

    def journal_entries(self, invocation_id: str) -> list[tuple[int, bytes]]:
        return [tuple(msgpack.unpackb(raw)) for _, raw in self.txn.scan(keys.journal_prefix(invocation_id))]

    # ------------------------------------------------------------ attempts

    def start_attempt(self, invocation_id: str, status: InvocationStatus) -> InvocationStatus:
        status = status.evolve(
            phase=Phase.INVOKED,
            attempt=status.attempt + 1,
            waiting_completions=(),
            waiting_signals=(),
            waiting_named_signals=(),
            next_retry_at_ms=None,
            last_start_at_ms=self.now_ms,
            running_at_ms=status.running_at_ms if status.running_at_ms is not None else self.now_ms,
            modified_at_ms=self.now_ms,  # so `save` copies it no further
        )
        self.actions.append(InvokeAttempt(invocation_id, status.attempt))
        return self.save(invocation_id, status)

    # ------------------------------------------------------------ completion

    def complete(self, invocation_id: str, status: InvocationStatus, outcome: Outcome) -> None:
        """End an invocation: answer its waiters, release its key, keep or drop it by its retention."""
        assert not status.is_completed, f"invocation {invocation_id} completed twice"
        if status.phase is Phase.INVOKED:
            self.actions.append(AbortAttempt(invocation_id, status.attempt))
            self.mark_running(invocation_id, False)
        retained = status.completion_retention_ms > 0
        expires_at_ms = self.now_ms + status.completion_retention_ms if retained else None
        for sink in status.response_sinks:
            self.deliver_outcome(sink, invocation_id, outcome, expires_at_ms, status.target)
        keep_journal = retained and status.journal_retention_ms > 0
        self.drop_notified(invocation_id, status)
        if not keep_journal:
            self.drop_journal(invocation_id, status)
        self._drop_timers(invocation_id, status)
        if isinstance(state := status.state, Inboxed):
            assert status.target.key is not None, "an inboxed invocation has a key"
            removed = self._remove_inbox_row(
                keys.inbox_key(status.target.service, status.target.key, state.inbox_seq), status.target.service
            )
            assert removed, f"inboxed {invocation_id} was not in its key's inbox"
        self.release_lock(invocation_id, status)
        completed = status.evolve(
            phase=Phase.COMPLETED,
            outcome=outcome,
            output=None,
            completed_at_ms=self.now_ms,
            response_sinks=(),
            waiting_completions=(),
            waiting_signals=(),
            waiting_named_signals=(),
            journal_length=status.journal_length if keep_journal else 0,
            inbox_seq=None,
            next_retry_at_ms=None,
            pending_sleeps=(),
            modified_at_ms=self.now_ms,  # so `save` copies it no further
        )
        if retained:
            completed = self.save(invocation_id, completed)
            self._set_retention_timers(invocation_id, completed)
        else:
            self.forget(invocation_id, completed)

    def _set_retention_timers(self, invocation_id: str, completed: InvocationStatus) -> None:
        """Durable timers that remove the journal, then the whole invocation, when their retentions end."""
        expires_at_ms, journal_expires_at_ms = completed.expires_at_ms, completed.journal_expires_at_ms
        assert expires_at_ms is not None and journal_expires_at_ms is not None, "a completed invocation has a completion time"
        self.set_timer(expires_at_ms, invocation_id, TimerKind.CLEANUP, 0)
        if completed.journal_length and journal_expires_at_ms < expires_at_ms:
            self.set_timer(journal_expires_at_ms, invocation_id, TimerKind.JOURNAL_CLEANUP, 0)

    def drop_journal(self, invocation_id: str, status: InvocationStatus) -> None:
        """Delete the journal rows, known by index: no scan."""
        for index in range(status.journal_length):
            self.txn.delete(keys.journal_key(invocation_id, index))

    def drop_notified(self, invocation_id: str, status: InvocationStatus) -> None:
        """Delete the markers of stored notifications (needed only while the invocation runs), if any notification was stored."""
        if status.journal_length > status.command_count:
            self.txn.delete_prefix(keys.notified_prefix(invocation_id))

    def _drop_timers(self, invocation_id: str, status: InvocationStatus) -> None:
        """Delete the timers a completing invocation still has: its delayed start, its retry, its sleeps."""
        match status.state:
            case Scheduled(execute_at_ms=int(execute_at_ms)):
                self.remove_timer(execute_at_ms, invocation_id, TimerKind.DELAYED_INVOKE, 0)
            case BackingOff(attempt=attempt, next_retry_at_ms=next_retry_at_ms):
                self.remove_timer(next_retry_at_ms, invocation_id, TimerKind.RETRY, attempt)
            case Scheduled() | Inboxed() | Invoked() | Suspended() | Paused() | Completed():
                pass  # no timer of its phase
            case unknown:
                assert_never(unknown)
        for fire_at_ms, completion_id in status.pending_sleeps:
            self.remove_timer(fire_at_ms, invocation_id, TimerKind.SLEEP, completion_id)

    def forget(self, invocation_id: str, status: InvocationStatus) -> None:
        """Drop every row a completed invocation owns: status, journal, retention timers, and a workflow run's state and promises.

        The retention timers' keys derive from the status (completion time plus
        each retention), so they are deleted by key, without a scan.
        """
        assert status.is_completed, f"only a completed invocation is forgotten, {invocation_id} is {status.phase.name}"
        self.txn.delete(keys.invocation_key(invocation_id))
        self.txn.delete(keys.deadlock_key(invocation_id))
        self.drop_journal(invocation_id, status)
        expires_at_ms, journal_expires_at_ms = status.expires_at_ms, status.journal_expires_at_ms
        if expires_at_ms is not None and journal_expires_at_ms is not None and status.completion_retention_ms > 0:
            self.remove_timer(expires_at_ms, invocation_id, TimerKind.CLEANUP, 0)  # gone already when it is the timer that fired
            if journal_expires_at_ms < expires_at_ms:  # set at completion if a journal was kept (it may be purged or fired since)
                self.remove_timer(journal_expires_at_ms, invocation_id, TimerKind.JOURNAL_CLEANUP, 0)
        if status.target.is_workflow_run and status.target.key is not None:
            self.txn.delete_prefix(keys.state_prefix(status.target.service, status.target.key))
            self.txn.delete_prefix(keys.promise_prefix(status.target.service, status.target.key))

    def deliver_outcome(
        self, sink: Sink, invocation_id: str, outcome: Outcome, expires_at_ms: int | None, target: Target | None = None
    ) -> None:
        """Answer one waiter; an ingress waiter also learns until when the outcome is kept (`idempotency-expires`)."""
        if isinstance(sink, IngressSink):
            service, handler = (target.service, target.handler) if target is not None else (None, None)
            self.reply(
                sink,
                Reply(
                    ReplyKind.OUTCOME,
                    invocation_id,
                    outcome=outcome,
                    completion_expires_at_ms=expires_at_ms,
                    service=service,
                    handler=handler,
                ),
            )
        else:
            self.send(partition_key_of(sink.invocation_id), InvocationResponse(sink, outcome, invocation_id))

    def release_lock(self, invocation_id: str, status: InvocationStatus) -> None:
        """Free the key if this invocation holds it, and start the next invocation of its inbox."""
        target = status.target
        if not target.takes_lock or target.key is None:
            return
        lock = keys.lock_key(target.service, target.key)
        holder = self.txn.get(lock)
        if holder is None or holder.decode() != invocation_id:
            return
        self.txn.delete(lock)
        inbox = keys.inbox_prefix(target.service, target.key)
        head_row = keys.inbox_head_key(target.service, target.key)
        last_taken = self.txn.get(head_row)
        head = self.txn.first(inbox, _above(inbox, last_taken))
        while head is not None and is_queued_state_patch(head[1]):
            self._drop_inbox_head(head[0], target.service)
            self.patch_state(decode_queued_state_patch(head[1]))
            head = self.txn.first(inbox, _above(inbox, head[0][len(inbox) :]))
        if head is None:
            if last_taken is not None:
                self.txn.delete(head_row)
            return
        inbox_row, next_id_raw = head
        self._drop_inbox_head(inbox_row, target.service)
        self.txn.put(head_row, inbox_row[len(inbox) :])
        next_id = next_id_raw.decode()
        next_status = self.status(next_id)
        assert next_status is not None and next_status.phase is Phase.INBOXED, (
            f"inbox of {target.service}/{target.key} names {next_id}, which is not inboxed"
        )
        self.txn.put(lock, next_id.encode())
        self.start_attempt(next_id, next_status.evolve(inbox_seq=None))

    def acquire_or_enqueue(self, invocation_id: str, status: InvocationStatus) -> None:
        """Start an invocation now, or queue it behind the key's current lock holder."""
        target = status.target
        if target.takes_lock and target.key is not None:
            lock = keys.lock_key(target.service, target.key)
            holder = self.txn.get(lock)
            if holder is not None:
                seq = self._enqueue(target.service, target.key, invocation_id.encode())
                inboxed = self.save(invocation_id, status.evolve(phase=Phase.INBOXED, inbox_seq=seq, inboxed_at_ms=self.now_ms))
                check_queued_call(self, invocation_id, inboxed, holder.decode())
                return
            self.txn.put(lock, invocation_id.encode())
        self.start_attempt(invocation_id, status)

    def _enqueue(self, service: str, key: str, value: bytes) -> int:
        """Add an entry at the tail of a key's inbox; returns its sequence number.

        The sequence is partition-wide and only grows, so the row is always
        new: it is counted without reading it first.
        """
        seq = self.counter(keys.INBOX_NEXT_SEQ)
        self.txn.put(keys.inbox_key(service, key, seq), value)
        counts.add(self.txn, keys.inbox_count_key(service), 1)
        return seq

    def _drop_inbox_head(self, row: bytes, service: str) -> None:
        """Delete an inbox row just found by `Transaction.first` (so it is there)."""
        self.txn.delete(row)
        counts.add(self.txn, keys.inbox_count_key(service), -1)

    def _remove_inbox_row(self, row: bytes, service: str) -> bool:
        """Delete an inbox row if it is there; whether it was (and only then is it counted)."""
        removed = self.txn.remove(row)
        if removed:
            counts.add(self.txn, keys.inbox_count_key(service), -1)
        return removed

    def patch_state(self, patch: PatchState) -> bool:
        """Replace an object's state with `patch.state`, unless its version no longer matches (then nothing changes, as in Restate).

        Returns whether the state was replaced.
        """
        prefix = keys.state_prefix(patch.service, patch.key)
        current = [(keys.state_name_of(row, prefix), value) for row, value in self.txn.scan(prefix)]
        if patch.version is not None and state_version(current) != patch.version:
            return False
        wanted = dict(patch.state)
        for name, _ in current:
            if name not in wanted:
                self.txn.delete(keys.state_key(patch.service, patch.key, name))
        for name, value in wanted.items():
            self.txn.put(keys.state_key(patch.service, patch.key, name), value)
        return True

    def patch_state_or_enqueue(self, patch: PatchState) -> None:
        """Patch the state now if no exclusive invocation holds the key, else queue the patch in the key's inbox.

        `patch.reply_to` hears DONE (replaced), CONFLICT (the state's version is
        no longer `patch.version`) or ACK (queued: the version is checked when
        the key is free, and nobody is told the result).
        """
        sink = patch.reply_to
        if self.txn.get(keys.lock_key(patch.service, patch.key)) is None:
            applied = self.patch_state(patch)
            if sink is not None:
                message = "" if applied else f"the state of {patch.service}/{patch.key} changed: its version is no longer {patch.version}"
                self.reply(sink, Reply(ReplyKind.DONE if applied else ReplyKind.CONFLICT, "", message=message))
            return
        queued = dataclasses.replace(patch, reply_to=None)  # answered now; nobody waits for the later application
        self._enqueue(patch.service, patch.key, _QUEUED_STATE_PATCH + _encode_body(queued))
        if sink is not None:
            self.reply(sink, Reply(ReplyKind.ACK, ""))

    # ------------------------------------------------------------ effects

    def reply(self, sink: IngressSink, reply: Reply) -> None:
        self.actions.append(ReplyToIngress(sink, reply))

    def send(self, partition_key: int, body: RecordBody) -> None:
        """Queue a message for another (or this) partition in the outbox."""
        seq = self.counter(keys.OUTBOX_NEXT_SEQ)
        self.txn.put(keys.outbox_key(seq), msgpack.packb([partition_key, _encode_body(body)]))
        self.actions.append(SendOutbox(seq, partition_key, body))

    def set_timer(self, fire_at_ms: int, invocation_id: str, timer_kind: TimerKind, ref: int) -> None:
        """Arm a durable timer (counted once, however often the same timer is armed)."""
        if self.txn.insert(keys.timer_key(fire_at_ms, invocation_id, int(timer_kind), ref), b""):
            counts.add(self.txn, keys.TIMER_COUNT, 1)
        self.actions.append(ScheduleTimer(fire_at_ms, invocation_id, int(timer_kind), ref))

    def remove_timer(self, fire_at_ms: int, invocation_id: str, timer_kind: TimerKind, ref: int) -> bool:
        """Disarm a timer if it is armed; whether it was (fired, removed or never armed: False, and the count stays)."""
        removed = self.txn.remove(keys.timer_key(fire_at_ms, invocation_id, int(timer_kind), ref))
        if removed:
            counts.add(self.txn, keys.TIMER_COUNT, -1)
        return removed

    def fail_sink(self, sink: Sink, invocation_id: str, failure: Failure) -> None:
        self.deliver_outcome(sink, invocation_id, Outcome(failure=failure), None)


_QUEUED_STATE_PATCH = b"\x00patch:"
"""Inbox rows hold an invocation id (`inv_...`), or this marker and an encoded PatchState record."""


def _above(inbox: bytes, seq: bytes | None) -> bytes | None:
    """The first inbox key after the one with big-endian `seq` (None: from the start of the inbox)."""
    return None if seq is None else inbox + seq + b"\x00"


def is_queued_state_patch(inbox_value: bytes) -> bool:
    return inbox_value.startswith(_QUEUED_STATE_PATCH)


def decode_queued_state_patch(inbox_value: bytes) -> PatchState:
    from wal.records import decode_record

    body = decode_record(inbox_value[len(_QUEUED_STATE_PATCH) :]).body
    assert isinstance(body, PatchState), f"a queued state patch decodes as {type(body).__name__}"
    return body


def _awaits(status: InvocationStatus, completion_id: int | None, signal: int | str | None) -> bool:
    if completion_id is not None and completion_id in status.waiting_completions:
        return True
    if isinstance(signal, int) and signal in status.waiting_signals:
        return True
    return isinstance(signal, str) and signal in status.waiting_named_signals


def _encode_body(body: RecordBody) -> bytes:
    from wal.records import Envelope, Record, encode_record

    return encode_record(Record(Envelope(0), body))


def decode_outbox_row(raw: bytes) -> tuple[int, RecordBody]:
    from wal.records import decode_record

    partition_key, encoded = msgpack.unpackb(raw)
    return partition_key, decode_record(encoded).body


def failure_pb(failure: Failure) -> pb.Failure:
    return pb.Failure(code=failure.code, message=failure.message)


class ResultMessage(Protocol):
    """A message whose `result` oneof holds a value (a Value message or raw bytes) or a Failure (e.g. Output, CompletePromise)."""

    def WhichOneof(self, oneof_group: str) -> str | None: ...

    @property
    def value(self) -> bytes | pb.Value: ...

    @property
    def failure(self) -> pb.Failure: ...


class ValueOrFailureResult(Protocol):
    """A notification whose `result` oneof is a Value or a Failure."""

    @property
    def value(self) -> pb.Value: ...

    @property
    def failure(self) -> pb.Failure: ...


class VoidValueOrFailureResult(ValueOrFailureResult, Protocol):
    """A notification whose `result` oneof may also be Void."""

    @property
    def void(self) -> pb.Void: ...


def outcome_from_pb(message: ResultMessage) -> Outcome:
    """An Outcome from a message with a value/failure oneof (Value message or raw bytes value)."""
    which = message.WhichOneof("result")
    if which == "failure":
        failure = message.failure
        return Outcome(failure=Failure(failure.code, failure.message))
    if which == "value":
        value = message.value
        return Outcome(value=value if isinstance(value, bytes) else value.content)
    return Outcome(value=b"")


def set_result(message: VoidValueOrFailureResult, outcome: Outcome | None) -> None:
    """Fill the value(5)/failure(6)/void(4) oneof of a notification; None is void."""
    if outcome is None:
        message.void.SetInParent()
    else:
        set_value_or_failure(message, outcome)


def set_value_or_failure(message: ValueOrFailureResult, outcome: Outcome) -> None:
    """Fill the value/failure oneof of a notification that has no void result."""
    if outcome.failure is not None:
        message.failure.CopyFrom(failure_pb(outcome.failure))
    else:
        message.value.SetInParent()
        message.value.content = outcome.value or b""


NOTIFICATION_CLASSES = {
    MessageType.CALL_COMPLETION: pb.CallCompletionNotificationMessage,
    MessageType.ATTACH_INVOCATION_COMPLETION: pb.AttachInvocationCompletionNotificationMessage,
    MessageType.GET_INVOCATION_OUTPUT_COMPLETION: pb.GetInvocationOutputCompletionNotificationMessage,
    MessageType.GET_PROMISE_COMPLETION: pb.GetPromiseCompletionNotificationMessage,
}


def completion_for_sink(sink: JournalSink, outcome: Outcome | None) -> Message:
    """The notification a journal sink receives for an outcome (None: not ready, for GetInvocationOutput)."""
    cls = NOTIFICATION_CLASSES[MessageType(sink.notification_type)]
    message = cls(completion_id=sink.completion_id)
    set_result(message, outcome)
    return message
