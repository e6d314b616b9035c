"""The timer service's rescans: they hold every timer due within the window, and a later one starts past the fired timers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from partition_worker import keys
from partition_worker.store import PartitionStore, RocksDatabase
from partition_worker.timers import TimerService
from wal.records import RecordBody, TimerKind

NOW_MS = 1_000_000_000
WINDOW_MS = 60_000
SLEEP = int(TimerKind.SLEEP)


class _RecordingStore:
    """A real store whose scans are noted: where each began."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.scan_starts: list[bytes | None] = []

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        self.scan_starts.append(start)
        return self.store.scan(prefix, start)

    def write(self, puts: dict[bytes, bytes | None]) -> None:
        self.store.write(puts)


async def _not_appended(bodies: list[RecordBody]) -> None:
    raise AssertionError("these tests do not run the service's loop")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[_RecordingStore]:
    database = RocksDatabase(str(tmp_path / "state"))
    yield _RecordingStore(database.partition(3))
    database.close()


def _store_timers(store: _RecordingStore, fire_at_ms: list[int], prefix: str) -> list[tuple[int, str, int, int]]:
    entries = [(at, f"inv_{prefix}_{i}", SLEEP, 0) for i, at in enumerate(fire_at_ms)]
    store.write({keys.timer_key(*entry): b"" for entry in entries})
    return entries


def _held(service: TimerService) -> set[tuple[int, str, int, int]]:
    return set(service._heap)


def test_a_later_rescan_starts_past_the_fired_timers_and_still_holds_every_due_one(store: _RecordingStore) -> None:
    fired = _store_timers(store, [NOW_MS - 5_000 + i for i in range(2_000)], "fired")
    store.write({keys.timer_key(*entry): None for entry in fired})  # deleted, as apply does when each fires
    live = _store_timers(store, [NOW_MS + 1_000, NOW_MS + 2_000], "live")
    far = _store_timers(store, [NOW_MS + 3_600_000], "far")
    service = TimerService(store, _not_appended, lambda: NOW_MS, WINDOW_MS)
    service._rescan(NOW_MS)
    assert _held(service) == set(live)
    service._rescan(NOW_MS + WINDOW_MS // 2)
    assert _held(service) == set(live)
    first_scan, later_scan = store.scan_starts
    assert first_scan is None  # a new leader reads the table from its start
    assert later_scan == keys.timer_key(*live[0])  # past all 2,000 deletions: the first timer the last rescan found
    assert keys.timer_key(*far[0]) > later_scan


def test_a_timer_stored_after_a_rescan_is_held_before_or_after_where_the_next_rescan_starts(store: _RecordingStore) -> None:
    far = _store_timers(store, [NOW_MS + 3_600_000], "far")
    service = TimerService(store, _not_appended, lambda: NOW_MS, WINDOW_MS)
    service._rescan(NOW_MS)
    assert _held(service) == set()
    # Due within the window: sorts before where the next rescan starts; apply's ScheduleTimer action hands it over.
    (soon,) = _store_timers(store, [NOW_MS + 10], "soon")
    service.schedule(*soon)
    # Due just past the window: `schedule` leaves it to a rescan, which must still find it.
    (later,) = _store_timers(store, [NOW_MS + WINDOW_MS + 10_000], "later")
    service.schedule(*later)
    assert _held(service) == {soon}
    service._rescan(NOW_MS + WINDOW_MS // 2)
    assert _held(service) == {soon, later}
    assert keys.timer_key(*far[0]) not in [keys.timer_key(*entry) for entry in service._heap]
    assert store.scan_starts[-1] == keys.timer_key_floor(NOW_MS + WINDOW_MS + 1)  # nothing was found within the first window


def test_a_timer_still_stored_after_it_was_handed_out_is_found_again(store: _RecordingStore) -> None:
    """A popped timer whose TimerFired is not applied yet stays at or after where the next rescan starts (firing twice is harmless)."""
    (due,) = _store_timers(store, [NOW_MS - 1], "due")
    service = TimerService(store, _not_appended, lambda: NOW_MS, WINDOW_MS)
    service._rescan(NOW_MS)
    service._heap.clear()
    service._queued.clear()  # handed out, as `run` does before appending its TimerFired
    service._rescan(NOW_MS + WINDOW_MS // 2)
    assert _held(service) == {due}
