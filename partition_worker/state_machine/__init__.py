"""The partition state machine: `apply(txn, record)` turns one log record into state changes and actions.

Apply is deterministic: no clock (time comes from the record's envelope), no
randomness (ids are derived from what is in the log), no I/O (reads and writes
go through the transaction; effects are returned as actions). The caller
commits the transaction together with the applied offset, then, if it leads
the partition, carries out the actions.
"""

from __future__ import annotations

from partition_worker import keys
from partition_worker.actions import Action, BecomeLeader, SendOutbox
from partition_worker.state_machine import counts
from partition_worker.state_machine.commands import apply_attempt_events, apply_attempt_failed, apply_complete_promise
from partition_worker.state_machine.config import StateMachineConfig
from partition_worker.state_machine.context import ApplyContext, decode_outbox_row
from partition_worker.state_machine.lifecycle import (
    apply_attach,
    apply_cancel,
    apply_invocation_response,
    apply_invoke,
    apply_kill,
    apply_pause,
    apply_purge,
    apply_purge_journal,
    apply_restart_as_new,
    apply_resume,
    apply_signal,
    apply_timer,
)
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import Transaction
from wal.records import (
    AnnounceLeader,
    Attach,
    AttemptEvents,
    AttemptFailed,
    Cancel,
    CompletePromise,
    InvocationResponse,
    Invoke,
    Kill,
    OutboxTruncate,
    PatchState,
    Pause,
    Purge,
    PurgeJournal,
    Record,
    RestartAsNew,
    Resume,
    Signal,
    TimerFired,
)

__all__ = ["StateMachine", "StateMachineConfig"]


class StateMachine:
    def __init__(self, config: StateMachineConfig) -> None:
        self.config = config

    def leader_epoch(self, txn: Transaction) -> int:
        raw = txn.get(keys.LEADER_EPOCH)
        return keys.decode_u64(raw) if raw is not None else 0

    def apply(self, txn: Transaction, record: Record) -> list[Action]:
        """Apply one record; return what the leader must do once the changes are committed."""
        envelope = record.envelope
        current_epoch = self.leader_epoch(txn)
        if envelope.leader_epoch and envelope.leader_epoch < current_epoch:
            return []  # written on behalf of a superseded leader: fenced off
        if envelope.dedup is not None and self._is_duplicate(txn, envelope.dedup):
            return []
        ctx = ApplyContext(txn, self.config, envelope.timestamp_ms)
        body = record.body
        if isinstance(body, AnnounceLeader):
            self._announce_leader(ctx, body, current_epoch)
        elif isinstance(body, Invoke):
            apply_invoke(ctx, body)
        elif isinstance(body, AttemptEvents):
            apply_attempt_events(ctx, body)
        elif isinstance(body, AttemptFailed):
            apply_attempt_failed(ctx, body)
        elif isinstance(body, TimerFired):
            apply_timer(ctx, body)
        elif isinstance(body, Cancel):
            apply_cancel(ctx, body)
        elif isinstance(body, Kill):
            apply_kill(ctx, body)
        elif isinstance(body, Purge):
            apply_purge(ctx, body)
        elif isinstance(body, Resume):
            apply_resume(ctx, body)
        elif isinstance(body, Pause):
            apply_pause(ctx, body)
        elif isinstance(body, PurgeJournal):
            apply_purge_journal(ctx, body)
        elif isinstance(body, RestartAsNew):
            apply_restart_as_new(ctx, body)
        elif isinstance(body, PatchState):
            ctx.patch_state_or_enqueue(body)
        elif isinstance(body, CompletePromise):
            apply_complete_promise(ctx, body)
        elif isinstance(body, Attach):
            apply_attach(ctx, body)
        elif isinstance(body, Signal):
            apply_signal(ctx, body)
        elif isinstance(body, InvocationResponse):
            apply_invocation_response(ctx, body)
        elif isinstance(body, OutboxTruncate):
            self._truncate_outbox(ctx, body)
        else:  # pragma: no cover - the union is closed
            raise AssertionError(f"no apply step for {type(body).__name__}")
        return ctx.actions

    def _is_duplicate(self, txn: Transaction, dedup: tuple[str, int]) -> bool:
        producer, seq = dedup
        row = keys.dedup_key(producer)
        raw = txn.get(row)
        if raw is not None and keys.decode_u64(raw) >= seq:
            return True
        txn.put(row, keys.encode_u64(seq))
        return False

    def _announce_leader(self, ctx: ApplyContext, body: AnnounceLeader, current_epoch: int) -> None:
        """A new leader takes over: restart running attempts and re-send the outbox.

        It reads only the running index and the outbox (undelivered messages),
        never every invocation, and not even the index when the running count
        (kept by apply) says nothing runs: a scan of an emptied index range
        still steps over the deletions of every invocation that completed since
        RocksDB last compacted it. Timers need nothing here: the new leader's
        timer service loads the due ones from the store when it starts.
        """
        if body.leader_epoch <= current_epoch:
            return  # a stale or repeated announcement
        ctx.txn.put(keys.LEADER_EPOCH, keys.encode_u64(body.leader_epoch))
        ctx.actions.append(BecomeLeader(body.node_id, body.leader_epoch))
        if ctx.txn.get(keys.RUNNING_INDEX_COMPLETE) is None:
            _build_running_index(ctx)
        counted = counts.value(ctx.txn, keys.RUNNING_COUNT)
        if counted != 0:
            _restart_running(ctx, counted)
        for row, raw in ctx.txn.scan(keys.OUTBOX_PREFIX):
            partition_key, outbox_body = decode_outbox_row(raw)
            ctx.actions.append(SendOutbox(keys.outbox_seq_of(row), partition_key, outbox_body))

    def _truncate_outbox(self, ctx: ApplyContext, body: OutboxTruncate) -> None:
        for row, _ in ctx.txn.scan(keys.OUTBOX_PREFIX):
            if keys.outbox_seq_of(row) > body.up_to_seq:
                break
            ctx.txn.delete(row)


def _restart_running(ctx: ApplyContext, counted: int | None) -> None:
    """Start a new attempt of every invocation in the running index; count them if they were not counted yet (`counted` None)."""
    found = 0
    for row, _ in ctx.txn.scan(keys.RUNNING_PREFIX):
        invocation_id = keys.running_id_of(row)
        status = ctx.status(invocation_id)
        assert status is not None and status.phase is Phase.INVOKED, f"the running index names {invocation_id}, which is not running"
        ctx.start_attempt(invocation_id, status)  # already INVOKED: the index and the count stay as they are
        found += 1
    if counted is None:
        ctx.txn.put_object(keys.RUNNING_COUNT, counts.RowCount(found))
    assert counted in (None, found), f"the running count says {counted}, the running index holds {found}"


def _build_running_index(ctx: ApplyContext) -> None:
    """Index the running invocations of a store written before the index existed (once; it is kept by `save` from then on)."""
    for row, raw in ctx.txn.scan(keys.INVOCATION_PREFIX):
        if InvocationStatus.decode(raw).phase is Phase.INVOKED:
            ctx.mark_running(keys.invocation_id_of(row), True)
    ctx.txn.put(keys.RUNNING_INDEX_COMPLETE, b"")
