"""Waits on several durable futures at once: `gather`, `select`, `as_completed`, `wait_completed`.

These build one await tree for the machine, so a suspension names every
awaited result and the runtime resumes the invocation when any (or all) of
them completes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sdk._attempt import Attempt
from sdk._futures import RestateDurableFuture
from sdk._results import AwaitHandle, all_completed, first_completed


async def gather(*futures: RestateDurableFuture[Any]) -> list[RestateDurableFuture[Any]]:
    """Waits until every future completed; returns the futures (await each for its value)."""
    pending = [future for future in futures if not future.is_completed()]
    if pending:
        attempt = _attempt_of(pending)
        await attempt.wait(all_completed(*(AwaitHandle(future.handle) for future in pending)))
    return list(futures)


async def wait_completed(
    *futures: RestateDurableFuture[Any],
) -> tuple[list[RestateDurableFuture[Any]], list[RestateDurableFuture[Any]]]:
    """Waits until at least one future completed; returns (completed, not completed)."""
    if not futures:
        return [], []
    completed = [future for future in futures if future.is_completed()]
    if not completed:
        attempt = _attempt_of(futures)
        await attempt.wait(first_completed(*(AwaitHandle(future.handle) for future in futures)))
        completed = [future for future in futures if future.is_completed()]
    waiting = [future for future in futures if future not in completed]
    return completed, waiting


async def as_completed(*futures: RestateDurableFuture[Any]) -> AsyncIterator[RestateDurableFuture[Any]]:
    """Yields the futures in the order they complete."""
    remaining = list(futures)
    while remaining:
        completed, remaining = await wait_completed(*remaining)
        for future in completed:
            yield future


async def select(**futures: RestateDurableFuture[Any]) -> list[Any]:
    """Waits for the first of the named futures; returns [name, value] (the value raises if it failed)."""
    if not futures:
        raise ValueError("select() needs at least one named future, e.g. select(result=f1, timeout=f2)")
    names = {id(future): name for name, future in futures.items()}
    completed, _ = await wait_completed(*futures.values())
    first = completed[0]
    return [names[id(first)], await first]


def _attempt_of(futures: Any) -> Attempt:
    attempts = set()
    for future in futures:
        if not isinstance(future, RestateDurableFuture):
            raise TypeError(f"{future!r} is not a durable future; expected futures returned by ctx methods")
        attempts.add(id(future.attempt))
    if len(attempts) != 1:
        raise ValueError("the futures come from different invocations; expected futures of one ctx")
    return futures[0].attempt
