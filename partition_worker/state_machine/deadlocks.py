"""Deadlock detection (beyond Restate): a cycle of exclusive invocations waiting on each other, found when a call is queued behind a key's holder.

The wait-for graph has two kinds of edges: an invocation waits for the callees
of its unanswered calls (`InvocationStatus.pending_calls`), and an inboxed
invocation waits for the holder of its key's lock. A cycle can only close when
some call is queued behind a holder, so that is when apply looks: from the
holder it follows the edges it can see on this partition, and if it reaches
the queued call's caller, the caller, the queued call, the holder and the
invocations between them wait on each other for ever.

What is found: a self-call on one's own key, cycles whose links are on this
partition, and cycles closed by the holder's own call (A/x calls B/y, which
calls A/x, on any partitions). A cycle with a link on another partition
further away is not seen. At most `MAX_SEARCH_INVOCATIONS` invocations are
visited per check, so a check costs a bounded number of reads.

On a cycle apply records a `sys_deadlock` row (kept until the queued call is
forgotten), returns a `DeadlockDetected` action (the leader logs it and counts
it in `duro_deadlocks_detected_total`), and, if the queued call was started
with `fail_on_deadlock` (the node's `fail_deadlocked_calls`, carried in the
log), fails it with 508 and a message naming the cycle, which frees its caller.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

import msgpack

from partition_worker import keys
from partition_worker.actions import DeadlockDetected
from partition_worker.status import InvocationStatus, Phase
from protocol.error_codes import InvocationErrorCode
from wal.records import Failure, JournalSink, Outcome

if TYPE_CHECKING:
    from partition_worker.state_machine.context import ApplyContext

MAX_SEARCH_INVOCATIONS: Final = 64
"""Invocations one check visits at most (a bound on apply's reads, fixed so every replica decides alike)."""


def check_queued_call(ctx: ApplyContext, invocation_id: str, status: InvocationStatus, holder: str) -> bool:
    """`invocation_id` was just queued behind `holder`; True if it closed a cycle and was failed for it."""
    callers = [sink.invocation_id for sink in status.response_sinks if isinstance(sink, JournalSink)]
    for caller in callers:
        path = _wait_path(ctx, holder, caller)
        if path is None:
            continue
        cycle = [caller, invocation_id, *path] if path[-1] == caller else [caller, invocation_id, *path, caller]
        text = " -> ".join(f"{_target_of(ctx, member, status)} ({member})" for member in cycle)
        failed = status.fail_on_deadlock
        row = [ctx.now_ms, text, cycle, failed]
        ctx.txn.put(keys.deadlock_key(invocation_id), msgpack.packb(row))
        ctx.actions.append(DeadlockDetected(invocation_id, text, failed))
        if failed:
            message = f"deadlock: {text}; this call was failed to break the cycle (fail_deadlocked_calls)"
            ctx.complete(invocation_id, status, Outcome(failure=Failure(InvocationErrorCode.DEADLOCK, message)))
            return True
        return False
    return False


def _wait_path(ctx: ApplyContext, start: str, goal: str) -> list[str] | None:
    """The invocations from `start` to `goal` along wait-for edges visible here (both ends included), or None."""
    parents: dict[str, str | None] = {start: None}
    frontier = deque([start])
    while frontier and len(parents) <= MAX_SEARCH_INVOCATIONS:
        node = frontier.popleft()
        if node == goal:
            path = [node]
            while (parent := parents[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for successor in _waits_for(ctx, node):
            if successor not in parents:
                parents[successor] = node
                frontier.append(successor)
    return None


def _waits_for(ctx: ApplyContext, invocation_id: str) -> list[str]:
    status = ctx.status(invocation_id)
    if status is None or status.is_completed:
        return []
    waits = [callee for _, callee in status.pending_calls]
    if status.phase is Phase.INBOXED and status.target.key is not None:
        holder = ctx.txn.get(keys.lock_key(status.target.service, status.target.key))
        if holder is not None:
            waits.append(holder.decode())
    return waits


def _target_of(ctx: ApplyContext, invocation_id: str, queued: InvocationStatus) -> str:
    status = ctx.status(invocation_id)
    if status is not None:
        return status.target.path
    if queued.invoked_by_id == invocation_id and queued.invoked_by_target is not None:
        return queued.invoked_by_target
    return "?"


def decode_deadlock_row(raw: bytes) -> tuple[int, str, list[str], bool]:
    """(detected_at_ms, cycle text, cycle ids, failed) of a `Table.DEADLOCK` row."""
    detected_at_ms, text, cycle, failed = msgpack.unpackb(raw)
    return int(detected_at_ms), str(text), [str(member) for member in cycle], bool(failed)
