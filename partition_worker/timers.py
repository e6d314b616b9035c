"""The leader's timer service: turns due timers into `TimerFired` records.

Timers live in the partition store (sorted by fire time); this service keeps
only those due within `window_ms` in memory, rescanning the store as time
moves on, so a million far-away timers cost no memory. Firing a timer twice is
harmless: apply ignores a timer that is no longer stored.
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
        self._horizon_ms = now_ms + self.window_ms
        for row, _ in self._store.scan(keys.TIMER_PREFIX):
            entry = keys.parse_timer_key(row)
            if entry[0] > self._horizon_ms:
                break
            self._push(entry)

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
