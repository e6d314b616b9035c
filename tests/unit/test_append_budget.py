"""`AppendBudget`: appends past the count or byte bound wait, in arrival order, and a cancelled wait takes no room."""

from __future__ import annotations

import asyncio

import pytest

from wal.append_budget import AppendBudget


async def started(budget: AppendBudget, framed_bytes: int) -> asyncio.Task[None]:
    task = asyncio.create_task(budget.acquire(framed_bytes))
    await asyncio.sleep(0)
    return task


async def test_count_bound_makes_the_next_append_wait_until_one_is_released() -> None:
    budget = AppendBudget(max_appends=2, max_bytes=1000)
    await budget.acquire(10)
    await budget.acquire(10)
    waiting = await started(budget, 10)
    assert not waiting.done()
    budget.release(10)
    await asyncio.wait_for(waiting, 1)


async def test_byte_bound_lets_one_oversized_append_in_when_empty() -> None:
    budget = AppendBudget(max_appends=10, max_bytes=100)
    await budget.acquire(500)  # alone it always fits
    waiting = await started(budget, 1)
    assert not waiting.done()
    budget.release(500)
    await asyncio.wait_for(waiting, 1)


async def test_waiters_get_room_in_arrival_order() -> None:
    budget = AppendBudget(max_appends=10, max_bytes=100)
    await budget.acquire(90)
    big = await started(budget, 60)
    small = await started(budget, 5)  # would fit now, but must not overtake the earlier waiter
    assert not big.done() and not small.done()
    budget.release(90)
    await asyncio.wait_for(asyncio.gather(big, small), 1)


async def test_cancelled_wait_takes_no_room() -> None:
    budget = AppendBudget(max_appends=1, max_bytes=100)
    await budget.acquire(10)
    cancelled = await started(budget, 10)
    after = await started(budget, 10)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    budget.release(10)
    await asyncio.wait_for(after, 1)
    waiting = await started(budget, 10)
    assert not waiting.done(), "the cancelled waiter must not have left room taken or granted"
    budget.release(10)
    await asyncio.wait_for(waiting, 1)
