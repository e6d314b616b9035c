"""The invoker's appends of an attempt: messages no SDK waits on are held (`max_append_hold_ms`), so a handler's state read,
writes, output and End go in one record; an End is recorded however the request ends; a failed append stops the attempt.

The real processor and invoker run on the in-memory log in virtual time
(`tests/sim/loop.py`); a scripted exchange answers an exclusive handler of a
virtual object with chunks at given virtual times, as the TypeScript SDK does
for `Counter.add` (GetEagerState first, SetState, Output and End a moment later).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from partition_worker import keys
from partition_worker.deployments import CallPolicy, DeploymentEndpoint, HandlerInfo
from partition_worker.exchange import ExchangeError
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import InvokerSettings, ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType, encode_message
from protocol.ids import InvocationId
from tests.sim.loop import VirtualTimeLoop
from wal.log import AppendTooLargeError, LogError, LogFullError
from wal.memory import MemoryLog
from wal.records import (
    AttemptEvents,
    AttemptFailed,
    Envelope,
    HandlerKind,
    Invoke,
    Record,
    RetryPolicy,
    ServiceType,
    Target,
    decode_record,
    encode_record,
)

COUNTER_ADD = Target("Counter", "add", "alice", ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)
INVOCATION = str(InvocationId(1, b"\x01" * 16))
ENDPOINT = DeploymentEndpoint("dp_hold", "http://hold", bidirectional=True)

READ = encode_message(pb.GetEagerStateCommandMessage(key=b"count", void=pb.Void()))
WRITE_AND_RETURN = (
    encode_message(pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"1")))
    + encode_message(pb.OutputCommandMessage(value=pb.Value(content=b"1")))
    + encode_message(pb.EndMessage())
)


class OneObject:
    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None:
        return ENDPOINT

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None:
        return ENDPOINT

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None:
        return HandlerInfo(ServiceType.VIRTUAL_OBJECT, HandlerKind.EXCLUSIVE)

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        return None


class TimedExchange:
    """An exchange that answers 200 and then each chunk after its pause (virtual seconds), then ends; `calls` records end and close."""

    def __init__(self, chunks: list[tuple[float, bytes]], calls: list[str] | None = None) -> None:
        self._chunks = chunks
        self.calls = [] if calls is None else calls

    async def open(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        return None

    async def end(self) -> None:
        self.calls.append("end")

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        return 200, [("content-type", "application/vnd.restate.invocation.v5")]

    async def chunks(self) -> AsyncIterator[bytes]:
        for pause_s, chunk in self._chunks:
            await asyncio.sleep(pause_s)
            yield chunk

    async def close(self) -> None:
        self.calls.append("close")


class ResetAfterResponseExchange(TimedExchange):
    """The SDK ended its response and reset the stream (RST_STREAM, or its connection closed) before the request ended."""

    async def end(self) -> None:
        raise ExchangeError("closing the request to http://hold/invoke/Counter/add failed: stream 1 reset by hold: NO_ERROR")


def test_a_state_read_waits_for_the_end_and_goes_in_the_same_record() -> None:
    records, status, state = _run([(0, READ), (0.0002, WRITE_AND_RETURN)], InvokerSettings())
    assert [[f.message_type for f in r.frames] for r in records] == [
        [
            MessageType.GET_EAGER_STATE_COMMAND,
            MessageType.SET_STATE_COMMAND,
            MessageType.OUTPUT_COMMAND,
            MessageType.END,
        ]
    ]
    assert status.phase is Phase.COMPLETED and status.outcome is not None and status.outcome.value == b"1"
    assert state == b"1"


def test_without_a_hold_the_read_is_appended_on_its_own() -> None:
    records, status, state = _run([(0, READ), (0.0002, WRITE_AND_RETURN)], InvokerSettings(max_append_hold_ms=0))
    assert [len(r.frames) for r in records] == [1, 3]
    assert status.phase is Phase.COMPLETED and state == b"1"


def test_a_held_message_is_appended_once_the_hold_is_over() -> None:
    """Nothing waits longer than the hold: the read is appended alone after 5 ms, the rest when it comes 1 s later."""
    records, status, state = _run([(0, READ), (1.0, WRITE_AND_RETURN)], InvokerSettings(max_append_hold_ms=5))
    assert [f.message_type for f in records[0].frames] == [MessageType.GET_EAGER_STATE_COMMAND]
    assert [len(r.frames) for r in records] == [1, 3]
    assert status.phase is Phase.COMPLETED and state == b"1"


def test_the_request_ends_at_the_sdks_end_before_the_stream_is_closed() -> None:
    """The request body ends as soon as End is read, not once it is durable: a stream closed before its request ended
    is reset (RST_STREAM), and a Node endpoint drops a connection with GOAWAY after about 1,000 resets."""
    calls: list[str] = []
    _, status, _ = _run([(0, READ), (0.0002, WRITE_AND_RETURN)], InvokerSettings(), calls=calls)
    assert status.phase is Phase.COMPLETED
    assert calls == ["end", "End appended", "close"]


def test_a_held_message_is_appended_when_the_stream_ends_without_end() -> None:
    """A response cut after the read: the read is still recorded, then the attempt's failure."""
    records, status, _ = _run([(0, READ)], InvokerSettings(max_append_hold_ms=60_000), stop_after_first_failure=True)
    assert [[f.message_type for f in r.frames] for r in records] == [[MessageType.GET_EAGER_STATE_COMMAND]]
    assert status.phase is Phase.PAUSED and status.last_failure is not None
    assert "without End" in status.last_failure.message


def test_the_end_read_is_recorded_though_the_request_can_no_longer_be_ended() -> None:
    """The request is ended before the End is appended; a stream the SDK already reset refuses that, and the End read
    must still complete the invocation (it was recorded as a failed attempt and the handler ran again)."""
    records, status, state = _run(
        [(0, READ), (0.0002, WRITE_AND_RETURN)], InvokerSettings(), exchange=ResetAfterResponseExchange, single_attempt=True
    )
    assert [f.message_type for f in records[-1].frames][-1] == MessageType.END
    assert status.phase is Phase.COMPLETED and status.outcome is not None and status.outcome.value == b"1"
    assert status.last_failure is None
    assert state == b"1"


@pytest.mark.parametrize(
    ("refusal", "phase", "reason"),
    [
        (LogFullError("partition 0 is full (test)"), Phase.PAUSED, "the log refused the attempt's messages"),
        (AppendTooLargeError("a record over max_append_bytes (test)"), Phase.COMPLETED, "the attempt's messages do not fit the log"),
    ],
)
def test_an_append_that_fails_stops_the_attempt_at_once(refusal: LogError, phase: Phase, reason: str) -> None:
    """The SDK waits for its run's completion, which the failed append of its RunCommand never brings: the attempt stops
    with the log's reason at once, not after the inactivity timeout (here an hour; it waited 60 s by default). A record
    too large for the log fails the invocation for good."""
    run = encode_message(pb.RunCommandMessage(name="charge", result_completion_id=1))
    records, status, _ = _run(
        [(0, run), (7_200, WRITE_AND_RETURN)],
        InvokerSettings(inactivity_timeout_ms=3_600_000),
        single_attempt=True,
        prepare_log=lambda log: _refuse_the_first_attempt_events(log, refusal),
    )
    assert records == []
    assert status.phase is phase
    failure = status.last_failure if phase is Phase.PAUSED else status.outcome
    assert failure is not None and reason in str(failure) and str(refusal) in str(failure)


def _refuse_the_first_attempt_events(log: MemoryLog, refusal: LogError) -> None:
    append = log.append
    refused: list[bool] = []

    async def appending(partition: int, entries: list[bytes]) -> int:
        if not refused and any(isinstance(decode_record(entry).body, AttemptEvents) for entry in entries):
            refused.append(True)
            raise refusal
        return await append(partition, entries)

    log.append = appending  # type: ignore[method-assign]  # the test refuses one of the invoker's appends


def _run(
    chunks: list[tuple[float, bytes]],
    settings: InvokerSettings,
    stop_after_first_failure: bool = False,
    calls: list[str] | None = None,
    exchange: type[TimedExchange] = TimedExchange,
    single_attempt: bool = False,
    prepare_log: Callable[[MemoryLog], None] | None = None,
) -> tuple[list[AttemptEvents], InvocationStatus, bytes | None]:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(_serve(chunks, settings, stop_after_first_failure, calls, exchange, single_attempt, prepare_log))
    finally:
        loop.run_until_complete(_cancel_the_rest())
        loop.close()


async def _serve(
    chunks: list[tuple[float, bytes]],
    settings: InvokerSettings,
    stop_after_first_failure: bool,
    calls: list[str] | None,
    exchange: type[TimedExchange],
    single_attempt: bool,
    prepare_log: Callable[[MemoryLog], None] | None,
) -> tuple[list[AttemptEvents], InvocationStatus, bytes | None]:
    log = MemoryLog(1)
    if prepare_log is not None:
        prepare_log(log)
    if calls is not None:
        _record_appends_of_end(log, calls)
    store = MemoryPartitionStore()
    loop = asyncio.get_running_loop()
    invoker = Invoker(OneObject(), settings, lambda: int(loop.time() * 1000), transport=lambda *_: exchange(chunks, calls))
    clock_ms = lambda: int(loop.time() * 1000)  # noqa: E731 - the virtual loop's clock, twice
    processor = PartitionProcessor(
        0, 1, log, store, StateMachine(StateMachineConfig(0)), invoker, lambda sink, reply: None, ProcessorSettings(), clock_ms
    )
    task = loop.create_task(processor.run())
    try:
        await asyncio.wait_for(processor.leading.wait(), 5)
        policy = RetryPolicy(max_attempts=1) if stop_after_first_failure or single_attempt else None
        invoke = Invoke(INVOCATION, COUNTER_ADD, b"1", completion_retention_ms=60_000, retry_policy=policy)
        await log.append(0, [encode_record(Record(Envelope(0), invoke))])
        status = None
        for _ in range(400):
            await asyncio.sleep(0.05)
            status = _status(store)
            if status is not None and status.phase in (Phase.COMPLETED, Phase.PAUSED):
                break
        assert status is not None and status.phase in (Phase.COMPLETED, Phase.PAUSED), f"the invocation ends: {status}"
        bodies = [decode_record(entry).body for entry in log._partitions[0]]
        if stop_after_first_failure:
            assert any(isinstance(b, AttemptFailed) for b in bodies), "the cut attempt's failure is recorded"
        events = [b for b in bodies if isinstance(b, AttemptEvents) and b.invocation_id == INVOCATION]
        return events, status, store.get(keys.state_key("Counter", "alice", b"count"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await invoker.close()
        await log.close()


def _record_appends_of_end(log: MemoryLog, calls: list[str]) -> None:
    """Adds "End appended" to `calls` once an append carrying the SDK's End is durable."""
    append = log.append

    async def appending(partition: int, entries: list[bytes]) -> int:
        offset = await append(partition, entries)
        bodies = [decode_record(entry).body for entry in entries]
        if any(isinstance(b, AttemptEvents) and any(f.message_type == MessageType.END for f in b.frames) for b in bodies):
            calls.append("End appended")
        return offset

    log.append = appending  # type: ignore[method-assign]  # the test watches the invoker's appends


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _status(store: MemoryPartitionStore) -> InvocationStatus | None:
    raw = store.get(keys.invocation_key(INVOCATION))
    return InvocationStatus.decode(raw) if raw is not None else None
