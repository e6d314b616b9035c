"""The leader's timer service: turns due timers into `TimerFired` records.

Timers live in the partition store (sorted by fire time); this service keeps
only those due within `window_ms` in memory, rescanning the store as time
moves on, so a million far-away timers cost no memory. Firing a timer twice is
harmless: apply ignores a timer that is no longer stored.

A rescan starts where the last one found the first timer, not at the table's
start: the rows before it are timers that fired and were deleted, and until
RocksDB compacts them away a scan steps over each deletion (100,000 fired
timers: 5.7-10.9 ms of the event loop per rescan, `benchmarks/timer_rescan.py`).
A timer stored since then with an earlier fire time is due within the window
the last rescan covered, so `schedule` holds it already.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable

from partition_worker import keys
from partition_worker.store import PartitionStore
from wal.records import RecordBody, TimerFired, TimerKind

TimerEntry = tuple[int, str, int, int]  # fire_at_ms, invocation_id, timer_kind, ref


class TimerService:
    def __init__(
        self,
        store: PartitionStore,
        append: Callable[[list[RecordBody]], Awaitable[object]],
        clock_ms: Callable[[], int],
        window_ms: int = 60_000,
        max_fired_per_batch: int = 512,
    ) -> None:
        self._store = store
        self._append = append
        self._clock_ms = clock_ms
        self.window_ms = window_ms
        self.max_fired_per_batch = max_fired_per_batch
        self._heap: list[TimerEntry] = []
        self._queued: set[TimerEntry] = set()
        self._horizon_ms = 0
        self._scan_from: bytes | None = None  # no stored timer sorts before this key but those `schedule` holds
        self._wake = asyncio.Event()

    def schedule(self, fire_at_ms: int, invocation_id: str, timer_kind: int, ref: int) -> None:
        if fire_at_ms > self._horizon_ms:
            return  # a later rescan picks it up
        self._push((fire_at_ms, invocation_id, timer_kind, ref))
        self._wake.set()

    def _push(self, entry: TimerEntry) -> None:
        if entry not in self._queued:
            self._queued.add(entry)
            heapq.heappush(self._heap, entry)

    def _rescan(self, now_ms: int) -> None:
        """Hold every stored timer due by `now_ms + window_ms`, scanning from the first timer the last rescan found."""
        horizon_ms = self._horizon_ms = now_ms + self.window_ms
        beyond = keys.timer_key_floor(horizon_ms + 1)  # sorts before every timer due after the horizon
        first: bytes | None = None
        for row, _ in self._store.scan(keys.TIMER_PREFIX, self._scan_from):
            first = first or row
            entry = keys.parse_timer_key(row)
            if entry[0] > horizon_ms:
                break
            self._push(entry)
        # A timer stored from now on sorting before `first` is due by the horizon (it sorts by fire time), so `schedule` holds it.
        self._scan_from = min(first, beyond) if first is not None else beyond

    async def run(self) -> None:
        """Fire timers until cancelled. Cancellation loses nothing: the timers stay stored."""
        while True:
            now_ms = self._clock_ms()
            if now_ms + self.window_ms // 2 >= self._horizon_ms:
                self._rescan(now_ms)
            due: list[RecordBody] = []
            while self._heap and self._heap[0][0] <= now_ms and len(due) < self.max_fired_per_batch:
                entry = heapq.heappop(self._heap)
                self._queued.discard(entry)
                due.append(TimerFired(entry[0], entry[1], TimerKind(entry[2]), entry[3]))
            if due:
                await self._append(due)
                continue
            next_due_ms = self._heap[0][0] if self._heap else self._horizon_ms - self.window_ms // 2
            sleep_ms = max(1, min(next_due_ms, self._horizon_ms - self.window_ms // 2) - now_ms)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), sleep_ms / 1000)
            except TimeoutError:
                pass
