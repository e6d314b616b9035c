"""Handlers that Kafka subscriptions feed in the tests, on the official Restate Python SDK.

`EventLog/record` appends each event's `seq` to its key's state, so a test can
compare, per key, what the handler saw with what was produced (order and
count). An event may carry `sleep_ms` to make the handler slow (backpressure).
The last event's Kafka headers are kept too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.services.sdk_choice import restate

event_log = restate.VirtualObject("EventLog")


@event_log.handler()
async def record(ctx: restate.ObjectContext, event: dict[str, Any]) -> None:
    seen = await ctx.get("seen", type_hint=list[int]) or []
    seen.append(event["seq"])
    ctx.set("seen", seen)
    ctx.set("headers", dict(ctx.request().headers))
    if event.get("sleep_ms"):
        await asyncio.sleep(event["sleep_ms"] / 1000)


@event_log.handler(kind="shared")
async def seen(ctx: restate.ObjectSharedContext) -> list[int]:
    return await ctx.get("seen", type_hint=list[int]) or []


@event_log.handler(kind="shared")
async def headers(ctx: restate.ObjectSharedContext) -> dict[str, str]:
    return await ctx.get("headers", type_hint=dict[str, str]) or {}


app = restate.app([event_log])
