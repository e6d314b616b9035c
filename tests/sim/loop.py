"""An asyncio event loop on virtual time, for the simulator: sleeping costs nothing and every run is the same.

`loop.time()` is a number the loop advances itself: whenever no callback is
ready, it jumps straight to the next scheduled one instead of waiting. No
real I/O may happen on it (the simulator's log, store and deployments are in
memory), so the order in which callbacks run depends only on the program and
its seed. A run in which nothing is ready and nothing is scheduled is stuck:
the loop raises `Deadlock` rather than wait for ever.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from typing import Any


class Deadlock(RuntimeError):
    """Nothing is ready and nothing is scheduled: every task waits on something that will never happen."""


class Livelock(RuntimeError):
    """Callbacks keep running without virtual time moving on: something spins (a retry without a pause, say)."""


MAX_STEPS_AT_ONE_INSTANT = 100_000


class _Keys(Mapping[Any, selectors.SelectorKey]):
    def __init__(self, keys: dict[int, selectors.SelectorKey]) -> None:
        self._keys = keys

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys[fileobj if isinstance(fileobj, int) else fileobj.fileno()]

    def __iter__(self) -> Any:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _VirtualSelector(selectors.BaseSelector):
    """A selector on which nothing is ever ready: `select(timeout)` moves the clock on by `timeout` instead of waiting."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("no task is ready and no timer is scheduled")
        if timeout > 0:
            self._loop.advance_to_next_timer(timeout)
        return []

    def close(self) -> None:
        self._keys.clear()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _Keys(self._keys)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock starts at 0 and moves only when nothing is ready."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self._steps_at_now = 0
        self._steps_instant = -1.0
        super().__init__(_VirtualSelector(self))

    def _run_once(self) -> None:
        if self._virtual_now != self._steps_instant:
            self._steps_instant, self._steps_at_now = self._virtual_now, 0
        self._steps_at_now += 1
        if self._steps_at_now > MAX_STEPS_AT_ONE_INSTANT:
            ready = [_describe(handle) for handle in list(self._ready)[:10]]  # type: ignore[attr-defined]
            raise Livelock(f"{MAX_STEPS_AT_ONE_INSTANT} loop steps at virtual time {self._virtual_now:.6f} s; ready: {ready}")
        super()._run_once()  # type: ignore[misc]  # BaseEventLoop's one step

    def time(self) -> float:
        return self._virtual_now

    def advance_to_next_timer(self, seconds: float) -> None:
        """Move on by `seconds`, and at least to the earliest timer: `now + (when - now)` can fall short of `when` in floats."""
        assert seconds >= 0, "virtual time only moves forward"
        target = self._virtual_now + seconds
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]  # BaseEventLoop's timer heap
        if scheduled:
            target = max(target, scheduled[0].when())
        self._virtual_now = target


def _describe(handle: asyncio.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coroutine = owner.get_coro()
        frame = getattr(coroutine, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"task {owner.get_name()} ({getattr(coroutine, '__qualname__', '?')}{where})"
    return getattr(callback, "__qualname__", repr(callback))
