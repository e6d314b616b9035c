"""Microbenchmark of apply steps whose cost could grow with stored data: lock hand-over and leader announcement.

Run: `python benchmarks/apply_costs.py --queued 10000 --retained 100000`. On a
fresh RocksDB it queues `--queued` exclusive invocations behind one key's lock
holder and measures the mean time of one completion that hands the lock over
(Output + End of the holder, in one transaction); then it stores `--retained`
completed invocations (with their cleanup timers) and measures applying an
`AnnounceLeader`. Both should stay flat as the numbers grow.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from partition_worker.actions import InvokeAttempt
from partition_worker.state_machine import StateMachine, StateMachineConfig
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
)

COUNTER_ADD = Target("Counter", "add", "hot", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


class _Applier:
    def __init__(self, store: PartitionStore) -> None:
        self.store = store
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


def measure_announce(store: PartitionStore, retained: int) -> float:
    """Seconds to apply an AnnounceLeader with `retained` completed invocations stored."""
    applier = _Applier(store)
    applier.apply([AnnounceLeader(1, 1)])  # a log starts with an announcement
    for start in range(0, retained, 1000):
        batch = [
            Invoke(keyed_or_random_id(None), GREETER, b"1", completion_retention_ms=3_600_000) for _ in range(min(1000, retained - start))
        ]
        applier.apply(list(batch))
        applier.apply([_finish(invoke.invocation_id, 1) for invoke in batch])
    started = time.perf_counter()
    applier.apply([AnnounceLeader(1, 7)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", default="100,10000", help="comma-separated queue lengths")
    parser.add_argument("--retained", default="1000,100000", help="comma-separated counts of retained invocations")
    parser.add_argument("--completions", type=int, default=50)
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
            announce_s = measure_announce(database.partition(0), retained)
            database.close()
        print(f"announce with {retained:>8} retained: {announce_s * 1e3:10.1f} ms")


if __name__ == "__main__":
    main()
