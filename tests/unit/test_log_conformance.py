"""One conformance suite for every `Log` backend: each test runs against each entry of BACKENDS.

To add a backend, add a `Backend` to BACKENDS; a test that needs a
backend-specific fact (such as its sync counter) reads it from the `Backend`.
The Kafka backend needs a real broker, so it runs this same suite from
tests/e2e/test_kafka_log_conformance.py, which imports these tests and
overrides the `backend` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from wal.embedded import EmbeddedLog, EmbeddedLogLimits
from wal.log import Log, LogClosedError, LogTrimmedError
from wal.memory import MemoryLog

WAIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Backend:
    name: str
    open: Callable[[Path, int], Awaitable[Log]]
    sync_count: Callable[[Log], int] | None = None  # how many durable commits it made, if it group-commits


async def _open_memory(directory: Path, partition_count: int) -> Log:
    return MemoryLog(partition_count)


async def _open_embedded(directory: Path, partition_count: int) -> Log:
    return await EmbeddedLog.open(directory / "log", partition_count)


async def _open_embedded_uncached(directory: Path, partition_count: int) -> Log:
    """Every read goes to the files: no recent-entries cache, small read batches, small segments."""
    limits = EmbeddedLogLimits(max_cached_bytes=1, max_read_batch_bytes=8 * 1024, max_segment_bytes=256 * 1024)
    return await EmbeddedLog.open(directory / "log", partition_count, limits)


def _embedded_sync_count(log: Log) -> int:
    assert isinstance(log, EmbeddedLog)
    return log.fsync_count


BACKENDS = [
    Backend("memory", _open_memory),
    Backend("embedded", _open_embedded, _embedded_sync_count),
    Backend("embedded-uncached", _open_embedded_uncached, _embedded_sync_count),
]


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def open_log(backend: Backend, tmp_path: Path) -> AsyncIterator[Callable[[int], Awaitable[Log]]]:
    """Opens logs of the backend under test and closes them after the test."""
    opened: list[Log] = []

    async def open_with(partition_count: int) -> Log:
        log = await backend.open(tmp_path, partition_count)
        opened.append(log)
        return log

    yield open_with
    for log in opened:
        await log.close()


def tail_of(
    log: Log, partition: int, from_offset: int, max_batch_entries: int = 512
) -> contextlib.aclosing[AsyncGenerator[list[tuple[int, bytes]], None]]:
    """A tail that the `async with` closes on exit (every backend's tail is an async generator)."""
    batches = log.tail(partition, from_offset, max_batch_entries)
    assert isinstance(batches, AsyncGenerator), "a tail must be closable"
    return contextlib.aclosing(batches)


async def read_entries(log: Log, partition: int, from_offset: int, count: int, max_batch_entries: int = 512) -> list[tuple[int, bytes]]:
    """The next `count` entries of a tail from `from_offset` (a batch may hold more), waiting at most WAIT_TIMEOUT_S."""
    entries: list[tuple[int, bytes]] = []
    async with asyncio.timeout(WAIT_TIMEOUT_S), tail_of(log, partition, from_offset, max_batch_entries) as batches:
        async for batch in batches:
            assert 1 <= len(batch) <= max_batch_entries
            entries.extend(batch)
            if len(entries) >= count:
                break
    assert [offset for offset, _ in entries] == list(range(from_offset, from_offset + len(entries))), "offsets must be dense"
    return entries[:count]


def payload(partition: int, index: int, size: int = 32) -> bytes:
    stem = f"p{partition}-e{index}-".encode()
    return (stem * (size // len(stem) + 1))[:size]


async def test_offsets_are_dense_and_ordered_per_partition(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(3)
    assert log.partition_count == 3
    assert await log.append(0, [b"a"]) == 0
    assert await log.append(0, [b"b", b"c", b"d"]) == 3
    assert await log.append(2, [b"x", b"y"]) == 1
    assert await log.append(0, [b"e"]) == 4
    assert await read_entries(log, 0, 0, 5) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert await read_entries(log, 2, 0, 2) == [(0, b"x"), (1, b"y")]
    assert [await log.end_offset(partition) for partition in range(3)] == [5, 0, 2]


async def test_empty_entries_are_kept(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(1)
    assert await log.append(0, [b"", b"z", b""]) == 2
    assert await read_entries(log, 0, 0, 3) == [(0, b""), (1, b"z"), (2, b"")]


async def test_concurrent_appends_get_distinct_increasing_offsets(backend: Backend, open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    task_count, appends_per_task = 40, 15
    acknowledged: dict[tuple[int, int], bytes] = {}

    async def appender(task: int) -> None:
        previous = {0: -1, 1: -1}
        for index in range(appends_per_task):
            partition = (task + index) % 2
            entry = payload(partition, task * 1000 + index)
            offset = await log.append(partition, [entry])
            assert offset > previous[partition], "one task's appends to a partition must get increasing offsets"
            previous[partition] = offset
            assert (partition, offset) not in acknowledged, "two appends got the same offset"
            acknowledged[(partition, offset)] = entry

    async with asyncio.timeout(WAIT_TIMEOUT_S):
        await asyncio.gather(*(appender(task) for task in range(task_count)))
    total = task_count * appends_per_task
    for partition in range(2):
        count = sum(1 for p, _ in acknowledged if p == partition)
        assert sorted(offset for p, offset in acknowledged if p == partition) == list(range(count))
        entries = await read_entries(log, partition, 0, count)
        assert entries == [(offset, acknowledged[(partition, offset)]) for offset in range(count)]
    assert sum(1 for _ in acknowledged) == total
    if backend.sync_count is not None:
        assert backend.sync_count(log) < total // 4, "concurrent appends must share syncs (group commit)"


async def test_tail_from_start_middle_and_end_then_follows_new_entries(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(1)
    first = [payload(0, index) for index in range(100)]
    await log.append(0, first[:60])
    await log.append(0, first[60:])
    assert [entry for _, entry in await read_entries(log, 0, 0, 100, max_batch_entries=7)] == first
    assert await read_entries(log, 0, 42, 3) == [(42, first[42]), (43, first[43]), (44, first[44])]

    async def follow(from_offset: int, count: int) -> list[tuple[int, bytes]]:
        return await read_entries(log, 0, from_offset, count)

    from_start = asyncio.create_task(follow(0, 103))
    from_middle = asyncio.create_task(follow(50, 53))
    from_end = asyncio.create_task(follow(100, 3))
    from_future = asyncio.create_task(follow(102, 1))
    await asyncio.sleep(0.01)
    assert not from_end.done(), "a tail at the end must wait for new entries"
    new = [b"new-0", b"new-1", b"new-2"]
    for entry in new:
        await log.append(0, [entry])
    assert [entry for _, entry in await from_start] == first + new
    assert await from_middle == [(offset, first[offset]) for offset in range(50, 100)] + [(100, new[0]), (101, new[1]), (102, new[2])]
    assert await from_end == [(100, new[0]), (101, new[1]), (102, new[2])]
    assert await from_future == [(102, new[2])]


async def test_many_concurrent_tailers_see_every_entry_in_order(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    count = 300
    tailers = [asyncio.create_task(read_entries(log, tailer % 2, 0, count, max_batch_entries=1 + tailer)) for tailer in range(8)]
    rng = random.Random(7)
    appended = {0: 0, 1: 0}
    while min(appended.values()) < count:
        partition = rng.randrange(2)
        size = min(rng.randrange(1, 10), count - appended[partition])
        if size == 0:
            continue
        await log.append(partition, [payload(partition, appended[partition] + index) for index in range(size)])
        appended[partition] += size
    for tailer, task in enumerate(tailers):
        partition = tailer % 2
        assert await task == [(offset, payload(partition, offset)) for offset in range(count)]


async def test_end_offset(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    assert await log.end_offset(0) == 0
    await log.append(1, [b"a", b"b"])
    assert await log.end_offset(1) == 2
    assert await log.end_offset(0) == 0
    assert await log.append(1, [b"c"]) == 2
    assert await log.end_offset(1) == 3


@pytest.mark.parametrize("loop_turns_before_close", [0, 1, 3, 10, 100])
async def test_close_fails_a_starting_tail_and_later_calls(open_log: Callable[[int], Awaitable[Log]], loop_turns_before_close: int) -> None:
    """Close while a tail is anywhere in its start (event-loop turns, not time, place it): the tail ends with LogClosedError."""
    log = await open_log(1)
    await log.append(0, [b"a"])
    waiting = asyncio.create_task(read_entries(log, 0, 1, 1))
    for _ in range(loop_turns_before_close):
        await asyncio.sleep(0)
    await log.close()
    with pytest.raises(LogClosedError):
        await waiting
    with pytest.raises(LogClosedError):
        await log.append(0, [b"late"])
    with pytest.raises(LogClosedError):
        await log.end_offset(0)
    await log.close()  # twice is harmless


async def test_close_fails_a_tail_waiting_for_entries(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(1)
    await log.append(0, [b"a"])
    received: list[tuple[int, bytes]] = []
    first_received = asyncio.Event()

    async def follow() -> None:
        async with tail_of(log, 0, 0) as batches:
            async for batch in batches:
                received.extend(batch)
                first_received.set()

    following = asyncio.create_task(follow())
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        await first_received.wait()
    await log.close()
    with pytest.raises(LogClosedError):
        async with asyncio.timeout(WAIT_TIMEOUT_S):
            await following
    assert received == [(0, b"a")]


async def test_close_fails_pending_appends_and_keeps_acknowledged_ones(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    acknowledged: dict[tuple[int, int], bytes] = {}
    closed_errors = 0

    async def appender(task: int) -> None:
        nonlocal closed_errors
        for index in range(1000):
            entry = payload(task % 2, task * 10_000 + index)
            try:
                offset = await log.append(task % 2, [entry])
            except LogClosedError:
                closed_errors += 1
                return
            acknowledged[(task % 2, offset)] = entry
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(appender(task)) for task in range(20)]
    async with asyncio.timeout(WAIT_TIMEOUT_S):
        while len(acknowledged) < 100:
            await asyncio.sleep(0.001)
        await log.close()
        await asyncio.gather(*tasks)
    assert closed_errors == 20, "every appender must end with LogClosedError"
    for partition in range(2):
        offsets = sorted(offset for p, offset in acknowledged if p == partition)
        assert offsets == list(range(len(offsets))), "acknowledged offsets must be dense"


async def test_large_entries(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    rng = random.Random(1)
    big = [rng.randbytes(1024 * 1024) for _ in range(5)]
    assert await log.append(1, big[:3]) == 2
    assert await log.append(1, [b"small"]) == 3
    assert await log.append(1, big[3:]) == 5
    entries = await read_entries(log, 1, 0, 6, max_batch_entries=4)
    assert entries == [(0, big[0]), (1, big[1]), (2, big[2]), (3, b"small"), (4, big[3]), (5, big[4])]


async def test_many_partitions(open_log: Callable[[int], Awaitable[Log]]) -> None:
    partition_count = 256
    log = await open_log(partition_count)
    rounds = 3
    for round_number in range(rounds):
        offsets = await asyncio.gather(*(log.append(partition, [payload(partition, round_number)]) for partition in range(partition_count)))
        assert offsets == [round_number] * partition_count
    for partition in range(partition_count):
        assert await read_entries(log, partition, 0, rounds) == [(index, payload(partition, index)) for index in range(rounds)]
        assert await log.end_offset(partition) == rounds


async def test_bad_arguments_are_refused(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(2)
    with pytest.raises(ValueError, match="partition must be"):
        await log.append(2, [b"a"])
    with pytest.raises(ValueError, match="partition must be"):
        await log.append(-1, [b"a"])
    with pytest.raises(ValueError, match="at least one entry"):
        await log.append(0, [])
    with pytest.raises(TypeError, match="entries\\[1\\] must be bytes"):
        await log.append(0, [b"a", "text"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sequence of bytes"):
        await log.append(0, b"abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from_offset"):
        log.tail(0, -1)
    with pytest.raises(ValueError, match="max_batch_entries"):
        log.tail(0, 0, 0)
    with pytest.raises(ValueError, match="partition must be"):
        await log.end_offset(5)
    assert await log.end_offset(0) == 0, "refused appends must leave nothing behind"


async def test_appended_bytearray_is_copied(open_log: Callable[[int], Awaitable[Log]]) -> None:
    log = await open_log(1)
    buffer = bytearray(b"before")
    append = asyncio.create_task(log.append(0, [buffer]))  # type: ignore[list-item]
    await asyncio.sleep(0)
    buffer[:] = b"after!"
    assert await append == 0
    assert await read_entries(log, 0, 0, 1) == [(0, b"before")]


async def test_trim_keeps_every_entry_at_or_above_the_trim_point_at_its_offset(open_log: Callable[[int], Awaitable[Log]]) -> None:
    """After trim(p, t): entries >= t read back unchanged, start_offset <= t, a tail below the start fails, appends go on."""
    log = await open_log(2)
    for index in range(120):
        await log.append(index % 2, [payload(index % 2, index // 2, size=4096)])
    assert await log.start_offset(0) == 0
    await log.trim(0, 40)
    start = await log.start_offset(0)
    assert 0 <= start <= 40
    kept = await read_entries(log, 0, 40, 20)
    assert kept == [(offset, payload(0, offset, size=4096)) for offset in range(40, 60)]
    assert await read_entries(log, 1, 0, 60) == [(offset, payload(1, offset, size=4096)) for offset in range(60)], "p1 was not trimmed"
    if start > 0:
        with pytest.raises(LogTrimmedError):
            await read_entries(log, 0, start - 1, 1)
    assert await log.end_offset(0) == 60
    assert await log.append(0, [b"after"]) == 60
    await log.trim(0, 10)  # a lower trim point than before changes nothing
    assert await log.start_offset(0) == start
