"""Unit tests of the state machine's indexes: the key inbox hands the lock over in log order, the running index names exactly the running invocations and the running count counts them."""

from __future__ import annotations

from collections.abc import Iterator

from partition_worker import keys
from partition_worker.actions import InvokeAttempt
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import message_type_of
from tests.unit.test_state_machine import COUNTER_ADD, GREETER, Harness, invoke, of_type, output
from wal.records import AnnounceLeader, AttemptEvents, AttemptFailed, AttemptFrame, Cancel, Envelope, Failure, Kill, Record, Resume


def _running_index(h: Harness) -> set[str]:
    return {keys.running_id_of(row) for row, _ in h.store.scan(keys.RUNNING_PREFIX)}


def _running_count(h: Harness) -> int | None:
    raw = h.store.get(keys.RUNNING_COUNT)
    return None if raw is None else keys.decode_u64(raw)


class _ScanRecordingStore(MemoryPartitionStore):
    """A memory store that records the prefixes scanned (to see which reads an announcement makes)."""

    def __init__(self) -> None:
        super().__init__()
        self.scanned: list[bytes] = []

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.scanned.append(prefix)
        return super().scan(prefix)


def _running_statuses(h: Harness) -> set[str]:
    return {
        keys.invocation_id_of(row)
        for row, raw in h.store.scan(keys.INVOCATION_PREFIX)
        if InvocationStatus.decode(raw).phase is Phase.INVOKED
    }


def _finish(h: Harness, invocation_id: str) -> list[object]:
    status = h.status(invocation_id)
    assert status is not None
    return h.send(invocation_id, status.attempt, output(b"1"), pb.EndMessage())


def test_hand_over_follows_log_order_through_a_long_queue_with_cancellations() -> None:
    h = Harness()
    records = [invoke(COUNTER_ADD) for _ in range(200)]
    for record in records:
        h.apply(record)
    cancelled = {records[i].invocation_id for i in (1, 2, 50, 199)}
    for invocation_id in sorted(cancelled):
        h.apply(Cancel(invocation_id))
    holder = records[0].invocation_id
    started = [holder]
    while True:
        attempts = of_type(_finish(h, holder), InvokeAttempt)
        if not attempts:
            break
        (attempt,) = attempts
        holder = attempt.invocation_id
        started.append(holder)
    assert started == [r.invocation_id for r in records if r.invocation_id not in cancelled]
    assert list(h.store.scan(keys.inbox_prefix("Counter", "alice"))) == []
    assert h.store.get(keys.lock_key("Counter", "alice")) is None


def test_hand_over_in_one_transaction_sees_entries_queued_and_removed_in_it() -> None:
    """A batch that enqueues, cancels and completes on one key: the lock goes to the oldest entry still queued."""
    h = Harness()
    holder, queued_before = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    h.apply(holder)
    h.apply(queued_before)
    queued_in_batch = [invoke(COUNTER_ADD) for _ in range(3)]
    txn = Transaction(h.store)
    apply = h.machine.apply
    for record in queued_in_batch:
        apply(txn, Record(Envelope(h.now_ms), record))
    apply(txn, Record(Envelope(h.now_ms), Kill(queued_before.invocation_id)))
    apply(txn, Record(Envelope(h.now_ms), Cancel(queued_in_batch[0].invocation_id)))
    status = txn.get_object(keys.invocation_key(holder.invocation_id), InvocationStatus.decode)
    assert status is not None
    frames = tuple(AttemptFrame(int(message_type_of(m)), 0, m.SerializeToString()) for m in (output(b"1"), pb.EndMessage()))
    actions = apply(txn, Record(Envelope(h.now_ms), AttemptEvents(holder.invocation_id, status.attempt, frames, "dp_1", 6)))
    txn.commit()
    assert of_type(actions, InvokeAttempt) == [InvokeAttempt(queued_in_batch[1].invocation_id, 1)]
    remaining = [raw.decode() for _, raw in h.store.scan(keys.inbox_prefix("Counter", "alice"))]
    assert remaining == [queued_in_batch[2].invocation_id]


def test_running_index_follows_every_phase_change() -> None:
    h = Harness()
    h.apply(AnnounceLeader(1, 1))
    plain, failing, suspended, killed = (invoke(GREETER) for _ in range(4))
    holder, waiter = invoke(COUNTER_ADD), invoke(COUNTER_ADD)
    for record in (plain, failing, suspended, killed, holder, waiter):
        h.apply(record)
    assert _running_index(h) == _running_statuses(h) == {r.invocation_id for r in (plain, failing, suspended, killed, holder)}
    assert _running_count(h) == 5
    h.apply(AttemptFailed(failing.invocation_id, 1, Failure(500, "boom")))
    h.send(suspended.invocation_id, 1, pb.SuspensionMessage(waiting_completions=[1]))
    h.apply(Kill(killed.invocation_id))
    _finish(h, holder.invocation_id)
    assert _running_index(h) == _running_statuses(h) == {plain.invocation_id, waiter.invocation_id}
    assert _running_count(h) == 2
    h.apply(Resume(suspended.invocation_id))
    _finish(h, plain.invocation_id)
    assert _running_index(h) == _running_statuses(h) == {suspended.invocation_id, waiter.invocation_id}
    assert _running_count(h) == 2
    for invocation_id in (suspended.invocation_id, waiter.invocation_id):
        _finish(h, invocation_id)
    assert _running_index(h) == _running_statuses(h) == set()
    assert _running_count(h) == 0


def test_an_announcement_with_nothing_running_reads_no_index_and_one_with_some_restarts_them() -> None:
    h = Harness()
    h.store = store = _ScanRecordingStore()
    h.apply(AnnounceLeader(1, 1))
    records = [invoke(GREETER, retention_ms=60_000) for _ in range(5)]
    for record in records:
        h.apply(record)
        _finish(h, record.invocation_id)
    store.scanned.clear()
    assert of_type(h.apply(AnnounceLeader(2, 2)), InvokeAttempt) == []
    assert keys.RUNNING_PREFIX not in store.scanned, "the running count said 0, yet the running index was scanned"
    running = invoke(GREETER)
    h.apply(running)
    assert of_type(h.apply(AnnounceLeader(3, 3)), InvokeAttempt) == [InvokeAttempt(running.invocation_id, 2)]
    assert keys.RUNNING_PREFIX in store.scanned
    assert _running_count(h) == 1


def test_announcement_restarts_exactly_the_indexed_invocations() -> None:
    h = Harness()
    h.apply(AnnounceLeader(1, 1))
    records = [invoke(GREETER, retention_ms=60_000) for _ in range(10)]
    for record in records:
        h.apply(record)
    for record in records[:7]:
        _finish(h, record.invocation_id)
    actions = h.apply(AnnounceLeader(2, 2))
    assert sorted(a.invocation_id for a in of_type(actions, InvokeAttempt)) == sorted(r.invocation_id for r in records[7:])


def test_a_store_written_before_the_running_index_gets_it_at_the_next_announcement() -> None:
    h = Harness()
    h.apply(AnnounceLeader(1, 1))
    records = [invoke(GREETER) for _ in range(3)]
    for record in records:
        h.apply(record)
    # What an older duro left behind: statuses, but neither the index nor its completeness marker nor the count.
    for row, _ in list(h.store.scan(keys.RUNNING_PREFIX)):
        h.store.write({row: None})
    h.store.write({keys.RUNNING_INDEX_COMPLETE: None, keys.RUNNING_COUNT: None})
    actions = h.apply(AnnounceLeader(1, 2))
    assert sorted(a.invocation_id for a in of_type(actions, InvokeAttempt)) == sorted(r.invocation_id for r in records)
    assert _running_index(h) == _running_statuses(h)
    assert h.store.get(keys.RUNNING_INDEX_COMPLETE) is not None
    assert _running_count(h) == 3


def test_a_store_with_the_index_but_no_running_count_is_counted_by_the_next_announcement_and_kept_from_then_on() -> None:
    h = Harness()
    h.apply(AnnounceLeader(1, 1))
    records = [invoke(GREETER) for _ in range(4)]
    for record in records:
        h.apply(record)
    h.store.write({keys.RUNNING_COUNT: None})  # what duro wrote before the count existed
    _finish(h, records[0].invocation_id)
    assert _running_count(h) is None, "a count that was never established is not moved"
    actions = h.apply(AnnounceLeader(1, 2))
    assert len(of_type(actions, InvokeAttempt)) == 3
    assert _running_count(h) == 3
    _finish(h, records[1].invocation_id)
    h.apply(invoke(GREETER))
    assert _running_count(h) == len(_running_index(h)) == 3
