"""Fuzzing what a deployment answers: any bytes fail that attempt with a reason that is recorded and logged, and the partition keeps serving.

The real processor and invoker run on the in-memory log in virtual time
(`tests/sim/loop.py`); the invoker's transport answers the first invocation
with the fuzzed bytes, cut into the fuzzed pieces, and a second one with a
valid Output and End, which must complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from byte_cuts import pieces
from hypothesis import example, given, settings
from hypothesis import strategies as st

from partition_worker import keys
from partition_worker.deployments import CallPolicy, DeploymentEndpoint, HandlerInfo
from partition_worker.invoker import Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import InvokerSettings, ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore
from protocol import service_protocol_pb2 as pb
from protocol.error_codes import InvocationErrorCode as Code
from protocol.frames import encode_frame, encode_message
from protocol.ids import InvocationId
from tests.sim.loop import VirtualTimeLoop
from wal.memory import MemoryLog
from wal.records import AttemptFailed, Envelope, Invoke, Record, RetryPolicy, ServiceType, Target, decode_record, encode_record

GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
FUZZED = str(InvocationId(1, b"\x01" * 16))
VALID = str(InvocationId(2, b"\x02" * 16))
ENDPOINT = DeploymentEndpoint("dp_fuzz", "http://fuzz", bidirectional=False)


class OneDeployment:
    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None:
        return ENDPOINT

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None:
        return ENDPOINT

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None:
        return HandlerInfo(ServiceType.SERVICE, None)

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        return None


class ScriptedExchange:
    """An exchange that answers 200 and then the given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def open(self) -> None:
        return None

    async def send(self, data: bytes) -> None:
        return None

    async def end(self) -> None:
        return None

    async def status(self, timeout_ms: int | None = None) -> tuple[int, list[tuple[str, str]]]:
        return 200, [("content-type", "application/vnd.restate.invocation.v5")]

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(0)
            yield chunk

    async def close(self) -> None:
        return None


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


VALID_ANSWER = encode_message(pb.OutputCommandMessage(value=pb.Value(content=b'"ok"'))) + encode_message(pb.EndMessage())


@settings(max_examples=150, deadline=None)
@example(b"\x00\x01" + bytes(6), [])  # an empty Suspension: apply fails it, no AttemptFailed record
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda t, p: encode_frame(t, p), st.integers(min_value=0, max_value=0xFFFF), st.binary(max_size=60)),
        st.builds(lambda b: VALID_ANSWER[: len(VALID_ANSWER) // 2] + b, st.binary(max_size=40)),
    ),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
)
def test_malformed_answers_fail_the_attempt_with_a_logged_reason_and_the_partition_keeps_serving(answer: bytes, cuts: list[int]) -> None:
    captured = Captured()
    invoker_log = logging.getLogger("duro.invoker")
    invoker_log.addHandler(captured)
    loop = VirtualTimeLoop()
    try:
        store, log = loop.run_until_complete(_run(answer, pieces(answer, cuts)))
    finally:
        invoker_log.removeHandler(captured)
        loop.run_until_complete(_cancel_the_rest())
        loop.close()
    fuzzed = _status(store, FUZZED)
    assert fuzzed is not None
    if fuzzed.phase is Phase.SUSPENDED:
        assert fuzzed.waiting_completions or fuzzed.waiting_signals or fuzzed.waiting_named_signals, "it waits for something"
    elif fuzzed.phase is not Phase.COMPLETED:
        assert fuzzed.phase is Phase.PAUSED and fuzzed.last_failure is not None, f"the first attempt's failure is recorded: {fuzzed}"
        failures = [r.body for r in map(decode_record, log) if isinstance(r.body, AttemptFailed) and r.body.invocation_id == FUZZED]
        if failures:  # the invoker refused the answer: it recorded and logged why
            reason = failures[0].failure.message
            assert reason, "the failure says why"
            assert any(reason in message or "failed" in message for message in captured.messages), (reason, captured.messages)
        else:  # apply refused what the attempt recorded (a Suspension that waits for nothing, b"\x00\x01" + 6 zero bytes)
            assert fuzzed.last_failure.code == Code.PROTOCOL_VIOLATION and "protocol violation" in fuzzed.last_failure.message
    valid = _status(store, VALID)
    assert valid is not None and valid.phase is Phase.COMPLETED and valid.outcome is not None and valid.outcome.value == b'"ok"'


async def _run(answer: bytes, pieces: list[bytes]) -> tuple[MemoryPartitionStore, list[bytes]]:
    log = MemoryLog(1)
    store = MemoryPartitionStore()
    loop = asyncio.get_running_loop()

    def transport(deployment: DeploymentEndpoint, path: str, headers: list[tuple[str, str]]) -> ScriptedExchange:
        invocation_id = dict(headers)["x-restate-invocation-id"]
        return ScriptedExchange(pieces if invocation_id == FUZZED else [VALID_ANSWER])

    invoker = Invoker(OneDeployment(), InvokerSettings(), lambda: int(loop.time() * 1000), transport=transport)
    processor = PartitionProcessor(
        0,
        1,
        log,
        store,
        StateMachine(StateMachineConfig(0)),
        invoker,
        lambda sink, reply: None,
        ProcessorSettings(),
        lambda: int(loop.time() * 1000),
    )
    task = loop.create_task(processor.run())
    try:
        await asyncio.wait_for(processor.leading.wait(), 5)
        once = RetryPolicy(max_attempts=1)  # the first failure pauses it: one attempt to look at
        for invocation_id in (FUZZED, VALID):
            invoke = Invoke(invocation_id, GREETER, b'"x"', completion_retention_ms=60_000, retry_policy=once)
            await log.append(0, [encode_record(Record(Envelope(0), invoke))])
        for _ in range(200):
            await asyncio.sleep(0.05)
            done = [_status(store, i) for i in (FUZZED, VALID)]
            if all(s is not None and s.phase in (Phase.COMPLETED, Phase.PAUSED, Phase.SUSPENDED) for s in done):
                break
        assert not task.done(), f"the processor keeps running: {task}"
        return store, list(log._partitions[0])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await invoker.close()
        await log.close()


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _status(store: MemoryPartitionStore, invocation_id: str) -> InvocationStatus | None:
    raw = store.get(keys.invocation_key(invocation_id))
    return InvocationStatus.decode(raw) if raw is not None else None
