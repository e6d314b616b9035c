"""The invoker notices a notification writer that died: its attempt stops at once with the reason, to be retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from partition_worker import invoker as invoker_module
from partition_worker.actions import Notify
from partition_worker.exchange import ExchangeError
from partition_worker.invoker import Invoker, PartitionLeader
from partition_worker.settings import InvokerSettings
from tests.unit.test_invoker_append_hold import OneObject


class BrokenRequest:
    """A bidirectional request whose body can no longer be written (the stream is gone)."""

    async def open(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        raise ExchangeError("stream 7 cannot send data: stream closed")

    async def end(self) -> None:
        return None

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        return 200, []

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b""

    async def close(self) -> None:
        return None


async def test_a_failed_notification_write_stops_the_attempt_with_the_reason() -> None:
    invoker = Invoker(OneObject(), InvokerSettings())
    handle = invoker_module._Attempt("inv_1", 1, cast(PartitionLeader, None))
    handle.task = asyncio.create_task(asyncio.Event().wait())  # the attempt, waiting for the SDK
    handle.started = True
    handle.notifications = asyncio.Queue()
    handle.notifications.put_nowait(Notify("inv_1", 1, 3, 0x0D, b"payload"))
    handle.notify_exchange = BrokenRequest()
    try:
        invoker._start_writer(handle)
        assert handle.writer is not None
        await asyncio.wait_for(asyncio.wait({handle.writer}), 5)
        await asyncio.sleep(0)  # the writer's done callback
        assert handle.stop is not None and handle.stop.failure is not None
        assert "writing a notification into the attempt's request failed" in handle.stop.failure.message
        assert "stream closed" in handle.stop.failure.message
        await asyncio.wait({handle.task}, timeout=5)
        assert handle.task.cancelled(), "the attempt is stopped at once, not left to the inactivity timeout"
    finally:
        handle.task.cancel()
        await invoker.close()


class EndedRequest(BrokenRequest):
    """A bidirectional request that takes notifications until the invoker ends it (as HTTP/2 refuses data after END_STREAM)."""

    def __init__(self) -> None:
        self.ended = False

    async def send(self, data: bytes) -> None:
        if self.ended:
            raise ExchangeError("sending to http://hold/invoke/Counter/add failed: stream 7: request body already ended")

    async def end(self) -> None:
        self.ended = True


async def test_a_notification_after_the_request_was_ended_on_purpose_does_not_stop_the_attempt() -> None:
    """The inactivity timeout or a draining node ended the request so that the SDK suspends; a notification the leader
    hands over meanwhile cannot follow (the next attempt replays it from the journal) and must not fail the attempt."""
    invoker = Invoker(OneObject(), InvokerSettings())
    handle = invoker_module._Attempt("inv_1", 1, cast(PartitionLeader, None))
    handle.task = asyncio.create_task(asyncio.Event().wait())  # the attempt, waiting for the SDK's Suspension
    handle.started = True
    request = EndedRequest()
    handle.notify_exchange = request
    await handle.close_request(request)
    handle.notifications = asyncio.Queue()
    handle.notifications.put_nowait(Notify("inv_1", 1, 3, 0x0D, b"payload"))
    try:
        invoker._start_writer(handle)
        assert handle.writer is not None
        await asyncio.wait_for(asyncio.wait({handle.writer}), 5)
        await asyncio.sleep(0)  # the writer's done callback
        assert handle.stop is None, "the SDK suspends: nothing to record for this attempt"
        assert not handle.task.done()
    finally:
        handle.task.cancel()
        await invoker.close()
