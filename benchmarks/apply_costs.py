"""Microbenchmark of apply: the steps whose cost could grow with stored data (lock hand-over, leader announcement) and a whole life.

Run: `python benchmarks/apply_costs.py --queued 10000 --retained 100000`. On a
fresh RocksDB it queues `--queued` exclusive invocations behind one key's lock
holder and measures the mean time of one completion that hands the lock over
(Output + End of the holder, in one transaction); then it stores `--retained`
completed invocations (with their cleanup timers) and measures applying an
`AnnounceLeader` with none running, then with `--running` running, right away
and again once RocksDB has flushed and compacted; and what one gauge sample reads on that store (the counts
apply keeps) against the scan of the timer and inbox rows that sampling did
before 0.2. All but the scan should stay flat as the numbers grow. Last it measures
apply's cost per invocation over a whole life (`--lifecycle` invocations in
batches of `--batch-records`, best and median of `--repetitions` runs): half
are delayed sends to a plain service (a timer armed and fired), half go to
`--object-keys` object keys (lock taken or queued and handed over); each
completes with both retention timers, which then fire and remove it. That is
the path every invocation takes, so it shows what a change to apply costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

from partition_worker.actions import InvokeAttempt, ScheduleTimer
from partition_worker.state_machine import StateMachine, StateMachineConfig, counts
from partition_worker.store import PartitionStore, RocksDatabase, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import message_type_of
from protocol.routing import keyed_or_random_id
from wal.records import (
    AnnounceLeader,
    AttemptEvents,
    AttemptFrame,
    Envelope,
    HandlerKind,
    Invoke,
    Record,
    RecordBody,
    ServiceType,
    Target,
    TimerFired,
    TimerKind,
)

COUNTER_ADD = Target("Counter", "add", "hot", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


class _Applier:
    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        counts.build(store)  # as a processor prepares a store that has applied nothing
        self.machine = StateMachine(StateMachineConfig(partition=0))
        self.now_ms = 1_000_000

    def apply(self, bodies: list[RecordBody]) -> list[object]:
        txn = Transaction(self.store)
        actions: list[object] = []
        for body in bodies:
            actions.extend(self.machine.apply(txn, Record(Envelope(self.now_ms), body)))
        txn.commit()
        return actions


def _finish(invocation_id: str, attempt: int) -> AttemptEvents:
    output = pb.OutputCommandMessage()
    output.value.content = b"1"
    end = pb.EndMessage()
    frames = tuple(AttemptFrame(int(message_type_of(m)), 0, m.SerializeToString()) for m in (output, end))
    return AttemptEvents(invocation_id, attempt, frames, "dp_1", 6)


def measure_hand_over(store: PartitionStore, queued: int, completions: int) -> float:
    """Mean seconds per completion that hands a key's lock to the next of `queued` waiting invocations."""
    applier = _Applier(store)
    invokes = [Invoke(keyed_or_random_id("hot"), COUNTER_ADD, b"1") for _ in range(queued + 1)]
    for start in range(0, len(invokes), 1000):
        applier.apply(list(invokes[start : start + 1000]))
    holder = invokes[0].invocation_id
    started = time.perf_counter()
    completions = min(completions, queued)
    for _ in range(completions):
        actions = applier.apply([_finish(holder, 1)])
        (attempt,) = [a for a in actions if isinstance(a, InvokeAttempt)]
        holder = attempt.invocation_id
    return (time.perf_counter() - started) / completions


def measure_announce(database: RocksDatabase, retained: int, running: int) -> tuple[float, float, float]:
    """Seconds to apply an AnnounceLeader with `retained` completed invocations stored: with none running, with `running`
    running, and the same again once RocksDB has flushed and compacted (the deletions of the running index dropped)."""
    applier = _Applier(database.partition(0))
    applier.apply([AnnounceLeader(1, 1)])  # a log starts with an announcement
    for start in range(0, retained, 1000):
        batch = [
            Invoke(keyed_or_random_id(None), GREETER, b"1", completion_retention_ms=3_600_000) for _ in range(min(1000, retained - start))
        ]
        applier.apply(list(batch))
        applier.apply([_finish(invoke.invocation_id, 1) for invoke in batch])
    elapsed_s = []
    for epoch, running_now in ((7, 0), (8, running), (9, running)):
        if epoch == 8:
            applier.apply([Invoke(keyed_or_random_id(None), GREETER, b"1") for _ in range(running)])
        if epoch == 9:
            assert database.settle(timeout_s=60), "RocksDB still compacts after 60 s"
        started = time.perf_counter()
        actions = applier.apply([AnnounceLeader(1, epoch)])
        elapsed_s.append(time.perf_counter() - started)
        assert sum(isinstance(a, InvokeAttempt) for a in actions) == running_now, "the announcement restarts exactly the running"
    return elapsed_s[0], elapsed_s[1], elapsed_s[2]


def measure_sample(store: PartitionStore, samples: int = 20) -> tuple[float, float]:
    """Mean seconds of reading the timer and inbox counts of `store` as the gauge sampler does, and of counting them by a scan."""
    started = time.perf_counter()
    for _ in range(samples):
        stored = counts.read(store)
    read_s = (time.perf_counter() - started) / samples
    started = time.perf_counter()
    scanned = counts.scan(store)
    scan_s = time.perf_counter() - started
    assert stored == scanned, f"the counts {stored} differ from the rows {scanned}"
    return read_s, scan_s


def measure_lifecycle(store: PartitionStore, invocations: int, batch_records: int, object_keys: int) -> float:
    """Mean CPU seconds of apply (with commits) per invocation through its whole life, records applied `batch_records` at a time.

    CPU time of this thread, not wall time: on a shared machine it varies far
    less, and RocksDB's background flushes and compactions are left out.
    """
    applier = _Applier(store)
    applier.apply([AnnounceLeader(1, 1)])
    pending: list[RecordBody] = []
    for n in range(invocations):
        if n % 2:
            target = Target("Counter", "add", f"key-{n % object_keys}", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
            pending.append(
                Invoke(keyed_or_random_id(target.key), target, b"1", completion_retention_ms=60_000, journal_retention_ms=30_000)
            )
        else:
            delayed_until_ms = applier.now_ms + 1_000
            invoke = Invoke(keyed_or_random_id(None), GREETER, b"1", execute_at_ms=delayed_until_ms, completion_retention_ms=60_000)
            pending.append(dataclasses.replace(invoke, journal_retention_ms=30_000))
    elapsed_s = 0.0
    while pending:
        following: list[RecordBody] = []
        for start in range(0, len(pending), batch_records):
            began = time.thread_time()
            actions = applier.apply(pending[start : start + batch_records])
            elapsed_s += time.thread_time() - began
            for action in actions:
                if isinstance(action, InvokeAttempt):
                    following.append(_finish(action.invocation_id, action.attempt))
                elif isinstance(action, ScheduleTimer):
                    following.append(TimerFired(action.fire_at_ms, action.invocation_id, TimerKind(action.timer_kind), action.ref))
        applier.now_ms += 60_000  # every timer armed so far is due
        pending = following
    return elapsed_s / invocations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="100,10000", help="comma-separated queue lengths")
    parser.add_argument("--retained", default="1000,100000", help="comma-separated counts of retained invocations")
    parser.add_argument("--running", type=int, default=10, help="invocations running at the second announcement")
    parser.add_argument("--completions", type=int, default=50)
    parser.add_argument("--lifecycle", type=int, default=20_000, help="invocations taken through a whole life")
    parser.add_argument("--batch-records", type=int, default=512, help="records per transaction in the lifecycle run")
    parser.add_argument("--object-keys", type=int, default=100, help="object keys the lifecycle run's exclusive calls go to")
    parser.add_argument("--repetitions", type=int, default=5, help="lifecycle runs (best and median reported)")
    args = parser.parse_args()
    for queued in [int(n) for n in args.queued.split(",")]:
        with tempfile.TemporaryDirectory() as directory:
            database = RocksDatabase(directory)
            per_completion_s = measure_hand_over(database.partition(0), queued, args.completions)
            database.close()
        print(f"hand-over with {queued:>8} queued: {per_completion_s * 1e6:10.0f} us per completion")
    for retained in [int(n) for n in args.retained.split(",")]:
        with tempfile.TemporaryDirectory() as directory:
            database = RocksDatabase(directory)
            idle_s, running_s, compacted_s = measure_announce(database, retained, args.running)
            read_s, scan_s = measure_sample(database.partition(0))
            database.close()
        print(f"announce with {retained:>8} retained: {idle_s * 1e3:10.3f} ms with none running")
        print(
            f"announce with {retained:>8} retained: {running_s * 1e3:10.3f} ms with {args.running} running "
            f"({compacted_s * 1e3:.3f} ms once RocksDB has compacted)"
        )
        print(
            f"gauge sample with {retained:>8} retained: {read_s * 1e3:10.3f} ms (a scan of the timer and inbox rows: {scan_s * 1e3:.1f} ms)"
        )
    runs: list[float] = []
    for _ in range(args.repetitions if args.lifecycle else 0):
        with tempfile.TemporaryDirectory() as directory:
            database = RocksDatabase(directory)
            runs.append(measure_lifecycle(database.partition(0), args.lifecycle, args.batch_records, args.object_keys))
            database.close()
    if runs:
        best_us, median_us = min(runs) * 1e6, statistics.median(runs) * 1e6
        print(f"whole life of {args.lifecycle} invocations: {best_us:8.1f} us best, {median_us:8.1f} us median of apply CPU per invocation")


if __name__ == "__main__":
    main()
