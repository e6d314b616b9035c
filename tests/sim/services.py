"""The simulated deployment's services, written with duro's SDK: journaled steps, state, sleeps and calls, with fault points.

Each attempt runs with `CURRENT` set to its `AttemptInfo`; `fault_point`
asks the simulation whether to fail there (an ordinary exception, which the
SDK reports as a retryable Error message). Time comes from the simulation's
clock, so a run is the same every time.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import sdk


class FaultSource(Protocol):
    def handler_fault(self, info: AttemptInfo, site: str) -> bool: ...

    def now_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    source: FaultSource
    invocation_id: str
    attempt: int  # counted by the deployment: the how-many-th request for this invocation


CURRENT: contextvars.ContextVar[AttemptInfo] = contextvars.ContextVar("simulated attempt")


class InjectedFault(Exception):
    """A retryable failure the simulation put into a handler."""


def fault_point(site: str) -> None:
    info = CURRENT.get()
    if info.source.handler_fault(info, site):
        raise InjectedFault(f"injected at {site} of {info.invocation_id} attempt {info.attempt}")


def _now_ms() -> int:
    return CURRENT.get().source.now_ms()


counter = sdk.VirtualObject("SimCounter")


@counter.handler()
async def append(ctx: sdk.ObjectContext, item: int) -> list[int]:
    """Appends `item` to the key's list: its order across invocations is the order of the key's inbox."""
    fault_point("append:start")
    items: list[int] = await ctx.get("items", type_hint=list[int]) or []
    items.append(item)
    ctx.set("items", items)
    fault_point("append:after-set")
    if item % 4 == 0:
        await ctx.sleep(timedelta(milliseconds=20 + item % 100))
    await ctx.run_typed("note", _nothing)
    fault_point("append:end")
    return items


@counter.handler(kind="shared")
async def items(ctx: sdk.ObjectSharedContext) -> list[int]:
    found: list[int] = await ctx.get("items", type_hint=list[int]) or []
    return found


worker = sdk.Service("SimWorker")


@worker.handler()
async def work(ctx: sdk.Context, job: dict[str, Any]) -> dict[str, Any]:
    """A few journaled steps, a durable sleep (recording when it was due and when it woke), maybe a call to SimCounter."""
    total = 0
    for step in range(int(job["steps"])):
        total += await ctx.run_typed(f"step{step}", _times_ten, sdk.RunOptions(type_hint=int), step)
        fault_point(f"work:step{step}")
    sleep_ms = int(job["sleep_ms"])
    wake_at = await ctx.run_typed("wake_at", _later, sdk.RunOptions(type_hint=int), sleep_ms)
    await ctx.sleep(timedelta(milliseconds=sleep_ms))
    woke = await ctx.run_typed("woke", _woke, sdk.RunOptions(type_hint=int))
    fault_point("work:after-sleep")
    if job.get("call_key") is not None:
        await ctx.object_call(append, key=str(job["call_key"]), arg=int(job["item"]))
    if job.get("terminal"):
        raise sdk.TerminalError("the job asked to fail", 400)
    return {"total": total, "wake_at": wake_at, "woke": woke}


# Run actions are coroutine functions: the SDK runs them on the loop (others go to a thread, whose timing is real, not simulated).


async def _nothing() -> None:
    return None


async def _times_ten(step: int) -> int:
    return step * 10


async def _later(delay_ms: int) -> int:
    return _now_ms() + delay_ms


async def _woke() -> int:
    return _now_ms()


SERVICES = [counter, worker]
