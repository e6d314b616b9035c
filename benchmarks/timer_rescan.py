"""Microbenchmark of the timer service's rescan over a table that fired timers left full of deletions.

Run: `python benchmarks/timer_rescan.py --fired 100000 --live 5`. On a fresh
RocksDB in a temporary folder it stores `--fired` timers due in the past and
deletes them (as apply does when each fires), plus `--live` timers still to
come (half within the service's window, half beyond), then times the leader's
timer service rescanning that partition: its first rescan (a new leader) and a
later one (the rescan every `timer_window_ms / 2`, 30 s by default), in three
states of RocksDB: the deletions still in the memtable, flushed to a table
file, and compacted away. Each time is the median of `--repetitions`. The
rescan runs on the partition's event loop, so its time is a pause of it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from rocksdict import BottommostLevelCompaction, CompactOptions

from partition_worker import keys
from partition_worker.store import RocksDatabase, RocksPartitionStore
from partition_worker.timers import TimerService
from wal.records import RecordBody, TimerKind

NOW_MS = 10_000_000_000
WINDOW_MS = 60_000
BATCH_ROWS = 10_000


async def _never_appended(bodies: list[RecordBody]) -> None:
    raise AssertionError("the benchmark never runs the service's loop")


def _timer_keys(count: int, first_fire_at_ms: int, step_ms: int, label: str) -> list[bytes]:
    return [keys.timer_key(first_fire_at_ms + i * step_ms, f"inv_{label}_{i:08d}", int(TimerKind.SLEEP), 0) for i in range(count)]


def _fill(store: RocksPartitionStore, fired: int, live: int) -> None:
    fired_keys = _timer_keys(fired, NOW_MS - fired * 10, 10, "fired")
    for start in range(0, fired, BATCH_ROWS):
        store.write(dict.fromkeys(fired_keys[start : start + BATCH_ROWS], b""))
    for start in range(0, fired, BATCH_ROWS):
        store.write(dict.fromkeys(fired_keys[start : start + BATCH_ROWS]))  # None: deleted, as apply does when each fires
    near = _timer_keys(live - live // 2, NOW_MS + 1_000, 1_000, "near")  # within the window
    far = _timer_keys(live // 2, NOW_MS + 3_600_000, 1_000, "far")  # beyond it
    store.write(dict.fromkeys(near + far, b""))


def _rescan_ms(store: RocksPartitionStore, repetitions: int) -> tuple[float, float, int]:
    """Median ms of a new service's first rescan, then of a later rescan; and the timers the service holds."""
    first, later = [], []
    held = 0
    for _ in range(repetitions):
        service = TimerService(store, _never_appended, lambda: NOW_MS, WINDOW_MS)
        started = time.perf_counter()
        service._rescan(NOW_MS)
        first.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        service._rescan(NOW_MS + WINDOW_MS // 2)
        later.append((time.perf_counter() - started) * 1000)
        held = len(service._heap)
    return statistics.median(first), statistics.median(later), held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fired", type=int, default=100_000, help="timers that fired (stored, then deleted)")
    parser.add_argument("--live", type=int, default=5, help="timers still to come")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timer-rescan-") as folder:
        database = RocksDatabase(folder)
        store = database.partition(0)
        _fill(store, args.fired, args.live)
        print(f"{args.fired} fired (deleted) timers, {args.live} live; rescan times (median of {args.repetitions}):")
        for state in ("memtable", "flushed", "compacted"):
            if state == "flushed":
                database._db.flush()
            elif state == "compacted":
                force = CompactOptions()
                force.set_bottommost_level_compaction(
                    BottommostLevelCompaction.force()
                )  # else one table file just moves down, deletions and all
                database._db.compact_range(None, None, force)
                database.settle(60)
            first, later, held = _rescan_ms(store, args.repetitions)
            print(f"  deletions {state:>9}: first rescan {first:8.3f} ms, later rescan {later:8.3f} ms ({held} timers held)")
        database.close()


if __name__ == "__main__":
    main()
