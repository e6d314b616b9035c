"""The invoker notices a notification writer that died: its attempt stops at once with the reason, to be retried; a
writer whose stream failed leaves the ending to the reader, which first takes what the SDK sent (an End, say)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

from partition_worker import invoker as invoker_module
from partition_worker.actions import Notify
from partition_worker.exchange import ExchangeError
from partition_worker.invoker import Invoker, PartitionLeader
from partition_worker.settings import InvokerSettings
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType, encode_message
from tests.unit.test_invoker_append_hold import ENDPOINT, OneObject
from wal.records import AttemptEvents, RecordBody


class BrokenRequest:
    """A bidirectional request whose body can no longer be written (for another reason than a failed stream)."""

    async def open(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        raise RuntimeError("stream 7 cannot send data: stream closed")

    async def end(self) -> None:
        return None

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        return 200, []

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b""

    async def close(self) -> None:
        return None


async def test_a_notification_writer_failing_otherwise_than_by_its_stream_stops_the_attempt_with_the_reason() -> None:
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


class EndThenReset(BrokenRequest):
    """The SDK sent its End, then reset the stream: the End waits unread while a notification's write fails on the reset."""

    def __init__(self) -> None:
        self.unread: deque[bytes] = deque()
        self.reset = False
        self.arrived = asyncio.Event()  # wakes the reader
        self.reset_seen = asyncio.Event()  # wakes the writer

    async def send(self, data: bytes) -> None:
        await self.reset_seen.wait()
        raise ExchangeError("sending to http://hold/invoke/Counter/add failed: stream 7 was reset by the peer (CANCEL)")

    async def end(self) -> None:
        raise ExchangeError("closing the request failed: stream 7 was reset by the peer (CANCEL)")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self.unread:
                yield self.unread.popleft()
            elif self.reset:
                raise ExchangeError("reading failed: stream 7 was reset by the peer (CANCEL)")
            else:
                self.arrived.clear()
                await self.arrived.wait()


class RecordingLeader:
    partition = 0
    leader_epoch = 1
    store = None

    def __init__(self) -> None:
        self.appended: list[RecordBody] = []

    async def append(self, body: RecordBody) -> int:
        self.appended.append(body)
        return len(self.appended) - 1


def _reading_attempt_with_a_notification(invoker: Invoker, leader: RecordingLeader, request: EndThenReset) -> invoker_module._Attempt:
    """A started attempt whose reader reads `request` and which has one notification queued for its writer."""
    handle = invoker_module._Attempt("inv_1", 1, cast(PartitionLeader, leader))
    handle.deployment = ENDPOINT
    handle.notify_exchange = request
    handle.task = asyncio.create_task(invoker._read_messages(handle, request))
    handle.started = True
    handle.notifications = asyncio.Queue()
    handle.notifications.put_nowait(Notify("inv_1", 1, 3, 0x0D, b"payload"))
    return handle


async def test_an_end_that_arrived_before_the_stream_reset_is_read_though_a_notification_write_failed_first() -> None:
    invoker = Invoker(OneObject(), InvokerSettings())
    leader = RecordingLeader()
    request = EndThenReset()
    handle = _reading_attempt_with_a_notification(invoker, leader, request)
    try:
        invoker._start_writer(handle)
        assert handle.writer is not None
        await asyncio.sleep(0)  # reader and writer wait on the stream
        request.unread.append(encode_message(pb.OutputCommandMessage(value=pb.Value(content=b"1"))) + encode_message(pb.EndMessage()))
        request.reset = True
        request.reset_seen.set()  # the writer sees the reset first ...
        await asyncio.wait_for(asyncio.wait({handle.writer}), 5)
        for _ in range(3):
            await asyncio.sleep(0)  # ... and its done callback runs before the reader is woken
        request.arrived.set()
        terminal = await asyncio.wait_for(handle.task, 5)  # before, the task was cancelled here and the attempt retried
        assert terminal is True
        assert handle.stop is None
        [events] = leader.appended
        assert isinstance(events, AttemptEvents)
        assert [frame.message_type for frame in events.frames] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    finally:
        handle.task.cancel()
        await invoker.close()


async def test_a_notification_writer_whose_stream_failed_leaves_the_end_of_the_attempt_to_the_reader() -> None:
    """No End came: the reader meets the stream's failure after the writer did, and the attempt fails (to be retried)."""
    invoker = Invoker(OneObject(), InvokerSettings())
    leader = RecordingLeader()
    request = EndThenReset()
    handle = _reading_attempt_with_a_notification(invoker, leader, request)
    try:
        invoker._start_writer(handle)
        await asyncio.sleep(0)
        request.reset = True
        request.reset_seen.set()
        request.arrived.set()
        await asyncio.wait({handle.task}, timeout=5)
        assert isinstance(handle.task.exception(), ExchangeError)
        assert leader.appended == []
    finally:
        handle.task.cancel()
        await invoker.close()
