"""Unit tests of the partition processor's leader duties on the in-memory log and store, with the real invoker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import pytest

from partition_worker import keys, metrics
from partition_worker.deployments import CallPolicy, DeploymentEndpoint, HandlerInfo
from partition_worker.invoker import _NO_RECORD, Invoker
from partition_worker.processor import PartitionProcessor
from partition_worker.settings import InvokerSettings, ProcessorSettings
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.status import InvocationStatus, Phase
from partition_worker.store import MemoryPartitionStore
from wal.log import LogError
from wal.memory import MemoryLog
from wal.records import Envelope, Invoke, Record, ServiceType, Target, TimerFired, decode_record, encode_record

pytestmark = pytest.mark.timeout(30)

GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


class NoDeployments:
    """A directory with nothing registered: every attempt fails at once, with a record saying so."""

    def deployment(self, deployment_id: str) -> DeploymentEndpoint | None:
        return None

    def latest_deployment_for(self, service: str) -> DeploymentEndpoint | None:
        return None

    def handler_info(self, service: str, handler: str) -> HandlerInfo | None:
        return None

    def call_policy(self, service: str, handler: str, has_idempotency_key: bool) -> CallPolicy | None:
        return None


@dataclass
class Partition:
    log: MemoryLog
    store: MemoryPartitionStore
    invoker: Invoker
    processor: PartitionProcessor

    def status(self, invocation_id: str) -> InvocationStatus | None:
        raw = self.store.get(keys.invocation_key(invocation_id))
        return InvocationStatus.decode(raw) if raw is not None else None

    async def applied(self, predicate: object, what: str) -> None:
        async with asyncio.timeout(10):
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.005)


@pytest.fixture
async def partition() -> AsyncIterator[Partition]:
    log = MemoryLog(1)
    store = MemoryPartitionStore()
    invoker = Invoker(NoDeployments(), InvokerSettings())
    processor = PartitionProcessor(
        0, 1, log, store, StateMachine(StateMachineConfig(0)), invoker, lambda sink, reply: None, ProcessorSettings()
    )
    task = asyncio.create_task(processor.run())
    try:
        await asyncio.wait_for(processor.leading.wait(), 5)
        yield Partition(log, store, invoker, processor)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await invoker.close()
        await log.close()


async def test_the_running_check_fails_an_invocation_whose_attempt_ended_without_a_record(partition: Partition) -> None:
    invocation_id = "inv_1" + "7" * 33
    started = asyncio.Event()
    original_start = partition.invoker.start

    def start_then_lose(leader: PartitionProcessor, invocation: str, attempt: int) -> None:
        original_start(leader, invocation, attempt)
        handle = partition.invoker._attempts[invocation]
        partition.invoker._stop(handle, _NO_RECORD)  # as if a bug ended the attempt and recorded nothing
        started.set()

    partition.invoker.start = start_then_lose  # type: ignore[assignment, method-assign]
    await partition.log.append(0, [encode_record(Record(Envelope(1), Invoke(invocation_id, GREETER, b"1")))])
    await asyncio.wait_for(started.wait(), 5)
    await partition.applied(lambda: not partition.invoker.running_count, "the lost attempt's task to end")
    status = partition.status(invocation_id)
    assert status is not None and status.phase is Phase.INVOKED

    violations = metrics.running_without_attempt.labels("0")
    before = violations._value.get()
    assert await partition.processor.check_running() == [invocation_id]
    assert violations._value.get() == before + 1
    await partition.applied(lambda: partition.status(invocation_id).phase is Phase.BACKING_OFF, "the repair to be applied")  # type: ignore[union-attr]
    status = partition.status(invocation_id)
    assert status is not None and status.last_failure is not None and "running check" in status.last_failure.message


async def test_the_running_check_accepts_live_attempts_and_recorded_ends(partition: Partition) -> None:
    invocation_id = "inv_1" + "8" * 33
    await partition.log.append(0, [encode_record(Record(Envelope(1), Invoke(invocation_id, GREETER, b"1")))])
    # No deployment: the attempt fails at once and records why; the invocation backs off.
    await partition.applied(lambda: (s := partition.status(invocation_id)) is not None and s.phase is Phase.BACKING_OFF, "the failure")
    assert await partition.processor.check_running() == []
    status = partition.status(invocation_id)
    assert status is not None and "no deployment is registered" in status.last_failure.message  # type: ignore[union-attr]


async def test_the_running_check_reads_no_index_when_the_running_count_says_nothing_runs(
    partition: Partition, monkeypatch: pytest.MonkeyPatch
) -> None:
    invocation_id = "inv_1" + "9" * 33
    await partition.log.append(0, [encode_record(Record(Envelope(1), Invoke(invocation_id, GREETER, b"1")))])
    await partition.applied(lambda: (s := partition.status(invocation_id)) is not None and s.phase is Phase.BACKING_OFF, "the failure")
    assert keys.decode_u64(partition.store.get(keys.RUNNING_COUNT) or b"") == 0
    scanned: list[bytes] = []
    scan = partition.store.scan

    def recording_scan(prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        scanned.append(prefix)
        return scan(prefix, start)

    monkeypatch.setattr(partition.store, "scan", recording_scan)
    assert await partition.processor.check_running() == []
    assert keys.RUNNING_PREFIX not in scanned, "an empty running index is not read"


class TimerAppendFailsOnce(MemoryLog):
    """The in-memory log, refusing the first append that fires a timer (as a Kafka append can time out)."""

    refused = 0

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        if not self.refused and any(isinstance(decode_record(entry).body, TimerFired) for entry in entries):
            self.refused += 1
            raise LogError("append timed out (refused by the test)")
        return await super().append(partition, entries)


async def test_a_dead_timer_service_steps_the_partition_down_and_a_new_epoch_fires_the_timer() -> None:
    log = TimerAppendFailsOnce(1)
    store = MemoryPartitionStore()
    invoker = Invoker(NoDeployments(), InvokerSettings())
    processor = PartitionProcessor(
        0, 1, log, store, StateMachine(StateMachineConfig(0)), invoker, lambda sink, reply: None, ProcessorSettings()
    )
    partition = Partition(log, store, invoker, processor)
    task = asyncio.create_task(processor.run())
    deaths = metrics.leader_task_failures.labels("0", "timers")
    before = deaths._value.get()
    try:
        await asyncio.wait_for(processor.leading.wait(), 5)
        first_epoch = processor.leader_epoch
        invocation_id = "inv_1" + "9" * 33
        now_ms = time.time_ns() // 1_000_000
        delayed = Invoke(invocation_id, GREETER, b"1", execute_at_ms=now_ms + 50)
        await log.append(0, [encode_record(Record(Envelope(now_ms), delayed))])
        await partition.applied(lambda: not processor.has_working_leader, "the partition to step down after the timer task died")
        assert deaths._value.get() == before + 1
        await partition.applied(lambda: processor.has_working_leader, "the partition to be claimed again")
        assert processor.leader_epoch > first_epoch
        await partition.applied(
            lambda: (s := partition.status(invocation_id)) is not None and s.phase is not Phase.SCHEDULED, "the delayed invocation to start"
        )
        assert log.refused == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await invoker.close()
        await log.close()
