"""Unit tests of the row counts apply keeps (`state_machine.counts`): timers and inbox entries per service, exact through every path.

After every step each test compares the stored counts with a scan of the rows
they count, and with the number the step must leave.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from partition_worker import keys, metrics
from partition_worker.gauges import GaugeSampler, SampledPartition
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import InvokerSettings, ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig, counts
from partition_worker.store import MemoryPartitionStore, PartitionStore, RocksDatabase, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.routing import keyed_or_random_id
from tests.unit.test_processor import NoDeployments
from tests.unit.test_state_machine import COUNTER_ADD, GREETER, Harness, invoke, output
from wal.memory import MemoryLog
from wal.records import (
    AttemptFailed,
    Cancel,
    Envelope,
    Failure,
    HandlerKind,
    Invoke,
    Kill,
    PatchState,
    Pause,
    Purge,
    PurgeJournal,
    Record,
    RecordBody,
    ServiceType,
    Target,
    TimerFired,
    TimerKind,
    encode_record,
)

MINUTE_MS = 60_000
CART_ADD = Target("Cart", "add", "bob", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)


class CountedHarness(Harness):
    """The state machine harness on a store prepared as a processor prepares one that has applied nothing."""

    def __init__(self) -> None:
        super().__init__()
        counts.build(self.store)


def _counts(store: PartitionStore) -> counts.Counts:
    """The stored counts, checked against a scan of the rows they count."""
    stored = counts.read(store)
    assert stored is not None, "the store has counts"
    assert stored == counts.scan(store), "the counts apply keeps equal the rows"
    return stored


def _timers(h: Harness) -> int:
    return _counts(h.store).timers


def _inbox(h: Harness) -> dict[str, int]:
    return _counts(h.store).inbox_by_service


def _finish(h: Harness, invocation_id: str) -> list[object]:
    status = h.status(invocation_id)
    assert status is not None
    return h.send(invocation_id, status.attempt, output(b"1"), pb.EndMessage())


def _retained(target: Target = GREETER) -> Invoke:
    """An invocation that keeps its outcome 10 minutes and its journal 1 minute: two retention timers at completion."""
    return Invoke(keyed_or_random_id(target.key), target, b"1", completion_retention_ms=10 * MINUTE_MS, journal_retention_ms=MINUTE_MS)


def test_a_delayed_send_arms_a_timer_that_firing_removes_once() -> None:
    h = CountedHarness()
    record = Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=h.now_ms + 1_000)
    h.apply(record)
    assert _timers(h) == 1
    fired = TimerFired(h.now_ms + 1_000, record.invocation_id, TimerKind.DELAYED_INVOKE)
    h.apply(fired)
    assert _timers(h) == 0
    assert h.apply(fired) == [] and _timers(h) == 0, "a timer fired twice is removed once"


def test_a_sleep_counts_until_it_fires_and_a_kill_removes_a_pending_sleep() -> None:
    h = CountedHarness()
    woken, killed = invoke(GREETER), invoke(GREETER)
    for record in (woken, killed):
        h.apply(record)
        sleep = pb.SleepCommandMessage(wake_up_time=h.now_ms + 5_000, result_completion_id=1)
        h.send(record.invocation_id, 1, sleep, pb.SuspensionMessage(waiting_completions=[1]))
    assert _timers(h) == 2
    h.apply(TimerFired(h.now_ms + 5_000, woken.invocation_id, TimerKind.SLEEP, 1))
    assert _timers(h) == 1
    h.apply(Kill(killed.invocation_id))
    assert _timers(h) == 0
    h.apply(TimerFired(h.now_ms + 5_000, killed.invocation_id, TimerKind.SLEEP, 1))
    assert _timers(h) == 0, "the sleep of a killed invocation is not there to fire"


def test_a_retry_timer_is_counted_until_a_pause_clears_it() -> None:
    h = CountedHarness()
    record = invoke(GREETER)
    h.apply(record)
    h.apply(AttemptFailed(record.invocation_id, 1, Failure(500, "boom")))
    assert _timers(h) == 1
    h.apply(Pause(record.invocation_id))
    assert _timers(h) == 0
    h.apply(Cancel(record.invocation_id))  # a paused invocation has no timer left to remove
    assert _timers(h) == 0


def test_retention_timers_are_counted_at_completion_and_each_removed_once() -> None:
    h = CountedHarness()
    record = _retained()
    h.apply(record)
    _finish(h, record.invocation_id)
    done_ms = h.now_ms
    assert _timers(h) == 2, "journal cleanup and cleanup"
    h.apply(TimerFired(done_ms + MINUTE_MS, record.invocation_id, TimerKind.JOURNAL_CLEANUP))
    assert _timers(h) == 1
    # The cleanup fires, and forgetting the invocation removes its retention timers again: neither is there any more.
    h.apply(TimerFired(done_ms + 10 * MINUTE_MS, record.invocation_id, TimerKind.CLEANUP))
    assert _timers(h) == 0 and h.status(record.invocation_id) is None


def test_purge_and_purge_journal_remove_the_retention_timers_they_find() -> None:
    h = CountedHarness()
    purged, journal_purged, purged_after_journal_cleanup = _retained(), _retained(), _retained()
    for record in (purged, journal_purged, purged_after_journal_cleanup):
        h.apply(record)
        _finish(h, record.invocation_id)
    done_ms = h.now_ms
    assert _timers(h) == 6
    h.apply(Purge(purged.invocation_id))
    assert _timers(h) == 4
    h.apply(PurgeJournal(journal_purged.invocation_id))
    assert _timers(h) == 3
    h.apply(PurgeJournal(journal_purged.invocation_id))
    assert _timers(h) == 3, "a second journal purge finds no timer"
    h.apply(TimerFired(done_ms + MINUTE_MS, purged_after_journal_cleanup.invocation_id, TimerKind.JOURNAL_CLEANUP))
    assert _timers(h) == 2
    h.apply(Purge(purged_after_journal_cleanup.invocation_id))
    assert _timers(h) == 1
    h.apply(Purge(journal_purged.invocation_id))
    assert _timers(h) == 0


def test_queued_invocations_are_counted_per_service_and_leave_the_count_as_the_lock_passes() -> None:
    h = CountedHarness()
    counters = [invoke(COUNTER_ADD) for _ in range(4)]
    carts = [invoke(CART_ADD) for _ in range(2)]
    for record in (*counters, *carts):
        h.apply(record)
    assert _inbox(h) == {"Counter": 3, "Cart": 1}, "the lock holders are not queued"
    _finish(h, counters[0].invocation_id)
    assert _inbox(h) == {"Counter": 2, "Cart": 1}
    _finish(h, carts[0].invocation_id)
    assert _inbox(h) == {"Counter": 2}
    for record in counters[1:]:
        _finish(h, record.invocation_id)
    assert _inbox(h) == {}


def test_cancel_and_kill_of_a_queued_invocation_leave_the_count() -> None:
    h = CountedHarness()
    holder, cancelled, killed, last = (invoke(COUNTER_ADD) for _ in range(4))
    for record in (holder, cancelled, killed, last):
        h.apply(record)
    assert _inbox(h) == {"Counter": 3}
    h.apply(Cancel(cancelled.invocation_id))
    assert _inbox(h) == {"Counter": 2}
    h.apply(Kill(killed.invocation_id))
    assert _inbox(h) == {"Counter": 1}
    h.apply(Kill(killed.invocation_id))
    assert _inbox(h) == {"Counter": 1}, "a second kill of a completed invocation removes nothing"
    _finish(h, holder.invocation_id)
    assert _inbox(h) == {}


def test_a_state_edit_queued_behind_the_lock_is_counted_until_it_is_applied() -> None:
    h = CountedHarness()
    holder = invoke(COUNTER_ADD)
    h.apply(holder)
    h.apply(PatchState("Counter", "alice", ((b"count", b"7"),)))
    assert _inbox(h) == {"Counter": 1}
    _finish(h, holder.invocation_id)
    assert _inbox(h) == {} and h.state("Counter", "alice", b"count") == b"7"


def _workload(h: Harness) -> list[RecordBody]:
    """Records touching every counted path, in the order a log would hold them."""
    delayed = Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=h.now_ms + 1_000)
    retained = _retained()
    holder, queued, killed = (invoke(COUNTER_ADD) for _ in range(3))
    records: list[RecordBody] = [delayed, retained, holder, queued, killed, invoke(CART_ADD), invoke(CART_ADD)]
    records.append(PatchState("Counter", "alice", ((b"k", b"v"),)))
    records.append(Kill(killed.invocation_id))
    records.append(TimerFired(h.now_ms + 1_000, delayed.invocation_id, TimerKind.DELAYED_INVOKE))
    records.append(AttemptFailed(retained.invocation_id, 1, Failure(500, "boom")))
    return records


def test_one_transaction_decodes_and_writes_each_count_once_whatever_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    h = CountedHarness()
    h.apply(Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=h.now_ms + 1))  # the count row is stored from here on
    decoded: list[bytes] = []
    decode = counts.RowCount.decode
    monkeypatch.setattr(counts.RowCount, "decode", staticmethod(lambda raw: decoded.append(raw) or decode(raw)))
    written: list[dict[bytes, bytes | None]] = []
    write = h.store.write
    monkeypatch.setattr(h.store, "write", lambda puts: written.append(dict(puts)) or write(puts))
    txn = Transaction(h.store)
    armed = [Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=h.now_ms + 2 + n) for n in range(100)]
    for record in armed:
        h.machine.apply(txn, Record(Envelope(h.now_ms), record))
    for record in armed[:40]:
        h.machine.apply(
            txn, Record(Envelope(h.now_ms), TimerFired(record.execute_at_ms or 0, record.invocation_id, TimerKind.DELAYED_INVOKE))
        )
    txn.commit()
    assert len(decoded) == 1, "the count is decoded by the first record of the batch and kept as an object"
    (puts,) = written
    assert puts[keys.TIMER_COUNT] == keys.encode_u64(61), "one write of the count: 1 + 100 armed - 40 fired"
    assert _timers(h) == 61


@pytest.mark.parametrize("batch_records", [1, 3, 100])
def test_replaying_the_log_into_an_empty_store_gives_the_same_counts(batch_records: int) -> None:
    h = CountedHarness()
    records = _workload(h)
    for record in records:
        h.apply(record)
    expected = _counts(h.store)
    assert expected.timers == 1 and expected.inbox_by_service == {"Counter": 2, "Cart": 1}, "the retry timer, and the queues"
    replayed = MemoryPartitionStore()
    counts.build(replayed)
    machine = StateMachine(StateMachineConfig(partition=0))
    for start in range(0, len(records), batch_records):
        txn = Transaction(replayed)
        for record in records[start : start + batch_records]:
            machine.apply(txn, Record(Envelope(h.now_ms), record))
        txn.commit()
    assert _counts(replayed) == expected
    assert {k: v for k, v in replayed.rows.items() if k.startswith(bytes([keys.Table.COUNT]))} == {
        k: v for k, v in h.store.rows.items() if k.startswith(bytes([keys.Table.COUNT]))
    }


def test_build_counts_a_store_that_has_none_and_a_stopped_build_writes_nothing() -> None:
    h = CountedHarness()
    for record in _workload(h):
        h.apply(record)
    expected = _counts(h.store)
    _forget_counts(h.store)
    assert counts.read(h.store) is None, "no counts until they are built"
    assert counts.build(h.store, lambda: True) is None and h.store.get(keys.COUNTS_COMPLETE) is None
    assert counts.build(h.store) == expected
    assert counts.read(h.store) == expected


def _forget_counts(store: PartitionStore) -> None:
    """Make the store look like one an older duro wrote: rows, but no counts and no marker."""
    rows = [row for row, _ in store.scan(bytes([keys.Table.COUNT]))]
    store.write({**dict.fromkeys(rows), keys.COUNTS_COMPLETE: None})


async def test_a_processor_builds_the_counts_of_a_store_without_them_before_applying(tmp_path: Path) -> None:
    """A RocksDB store with history and no counts: the processor counts it (in a thread), then applies and keeps the counts."""
    database = RocksDatabase(str(tmp_path / "state"))
    store = database.partition(0)
    log = MemoryLog(1)
    h = CountedHarness()
    h.now_ms = time.time_ns() // 1_000_000  # the processor's timer service runs on the real clock
    far_ms = h.now_ms + 3_600_000  # due long after the test: the timers stay armed
    records: list[RecordBody] = [Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=far_ms + n) for n in range(3000)]
    records += [invoke(COUNTER_ADD) for _ in range(5)]  # one holder, four queued
    txn = Transaction(store)
    machine = StateMachine(StateMachineConfig(partition=0))
    for record in records:
        machine.apply(txn, Record(Envelope(h.now_ms), record))
    txn.put(keys.APPLIED_OFFSET, keys.encode_u64(len(records) - 1))
    txn.commit()
    await log.append(0, [encode_record(Record(Envelope(h.now_ms), record)) for record in records])
    _forget_counts(store)
    invoker = Invoker(NoDeployments(), InvokerSettings())
    processor = PartitionProcessor(
        0, 1, log, store, StateMachine(StateMachineConfig(0)), invoker, lambda sink, reply: None, ProcessorSettings()
    )
    task = asyncio.create_task(processor.run())
    try:
        await asyncio.wait_for(processor.leading.wait(), 10)
        stored = counts.read(store)
        assert stored is not None and stored == counts.scan(store)
        assert stored.inbox_by_service == {"Counter": 4}
        assert stored.timers >= 3000, "the delayed sends (plus a retry timer once the holder's attempt failed)"
        queued_later = invoke(COUNTER_ADD)
        await log.append(0, [encode_record(Record(Envelope(h.now_ms), queued_later))])
        async with asyncio.timeout(10):
            while (counts.read(store) or counts.Counts()).inbox_by_service.get("Counter") != 5:
                await asyncio.sleep(0.005)
        assert counts.read(store) == counts.scan(store), "apply keeps the built counts"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await invoker.close()
        await log.close()
        database.close()


async def test_the_sampler_sets_the_gauges_from_the_counts_and_skips_a_store_not_counted_yet() -> None:
    h = CountedHarness()
    for record in _workload(h):
        h.apply(record)
    log = MemoryLog(8)
    sampler = GaugeSampler(log, lambda: [SampledPartition(7, 10, h.store)], Path("/nonexistent"))
    metrics.inbox_length.labels("7", "Gone").set(3)  # a service whose queue has emptied since the last sample
    await sampler.sample_once()
    assert metrics.timers_pending.labels("7")._value.get() == 1
    assert metrics.inbox_length.labels("7", "Counter")._value.get() == 2
    assert metrics.inbox_length.labels("7", "Cart")._value.get() == 1
    assert metrics.inbox_length.labels("7", "Gone")._value.get() == 0
    _forget_counts(h.store)
    metrics.timers_pending.labels("7").set(-1)
    await sampler.sample_once()
    assert metrics.timers_pending.labels("7")._value.get() == -1, "no value rather than a wrong one while counts are built"
    await log.close()


def test_a_count_never_goes_below_zero() -> None:
    txn = Transaction(MemoryPartitionStore())
    counts.add(txn, keys.TIMER_COUNT, 1)
    counts.add(txn, keys.TIMER_COUNT, -1)
    with pytest.raises(AssertionError, match="below zero"):
        counts.add(txn, keys.TIMER_COUNT, -1)


def test_the_count_keys_are_registered_and_do_not_collide() -> None:
    assert keys.Table.COUNT == 0x0E and len({t.value for t in keys.Table}) == len(keys.Table)
    assert keys.inbox_count_service_of(keys.inbox_count_key("Counter")) == "Counter"
    assert not keys.TIMER_COUNT.startswith(keys.INBOX_COUNT_PREFIX) and not keys.inbox_count_key("").startswith(keys.TIMER_COUNT)
