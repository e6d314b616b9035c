"""`AppendBudget`: bounds the appends a log holds at once, by count and by bytes, and makes further appends wait (back-pressure)."""

from __future__ import annotations

import asyncio
from collections import deque


class AppendBudget:
    """Room for appends handed to the log and not yet settled, by count and by bytes; waiters get room in arrival order."""

    def __init__(self, max_appends: int, max_bytes: int) -> None:
        self._max_appends = max_appends
        self._max_bytes = max_bytes
        self._appends = 0
        self._bytes = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, framed_bytes: int) -> None:
        """Wait until an append of `framed_bytes` fits. Cancelling the wait takes no room."""
        if not self._waiters and self._fits(framed_bytes):
            self._take(framed_bytes)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((framed_bytes, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(framed_bytes)  # room was granted just before the cancellation
            else:
                self._waiters.remove((framed_bytes, waiter))
                self._grant()
            raise

    def release(self, framed_bytes: int) -> None:
        self._appends -= 1
        self._bytes -= framed_bytes
        assert self._appends >= 0 and self._bytes >= 0, "append budget released more than was taken"
        self._grant()

    def _fits(self, framed_bytes: int) -> bool:
        return self._appends < self._max_appends and (self._bytes == 0 or self._bytes + framed_bytes <= self._max_bytes)

    def _take(self, framed_bytes: int) -> None:
        self._appends += 1
        self._bytes += framed_bytes

    def _grant(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            framed_bytes, waiter = self._waiters.popleft()
            if waiter.done():
                continue  # cancelled; its task has not yet run the cleanup in `acquire`
            self._take(framed_bytes)
            waiter.set_result(None)
