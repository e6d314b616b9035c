"""Tests of what only the embedded log does: recovery on open, torn tails, corruption, locking, segments, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from wal import embedded_files
from wal.embedded import EmbeddedLog, EmbeddedLogLimits, _RecentEntries
from wal.embedded_files import (
    FRAME_HEADER,
    FRAME_HEADER_BYTES,
    MARKER_BYTES,
    LogCorruptError,
    frame_crc,
    list_segment_numbers,
    segment_path,
)
from wal.log import LogClosedError, LogError, LogFullError

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
WAIT_TIMEOUT_S = 10.0
ONE_ENTRY_GROUP_BYTES = FRAME_HEADER_BYTES + 100 + MARKER_BYTES  # what `fill` writes per append: one entry and its commit marker


def tail_of(
    log: EmbeddedLog, partition: int, from_offset: int, max_batch_entries: int = 512
) -> contextlib.aclosing[AsyncGenerator[list[tuple[int, bytes]], None]]:
    """A tail that the `async with` closes on exit."""
    batches = log.tail(partition, from_offset, max_batch_entries)
    assert isinstance(batches, AsyncGenerator), "a tail must be closable"
    return contextlib.aclosing(batches)


def entry(index: int, size: int = 100) -> bytes:
    stem = f"entry-{index}-".encode()
    return (stem * (size // len(stem) + 1))[:size]


async def read_all(log: EmbeddedLog, partition: int, from_offset: int = 0, max_batch_entries: int = 512) -> list[bytes]:
    """Every durable entry of `partition` from `from_offset` on, checking that offsets are dense."""
    end = await log.end_offset(partition)
    entries: list[bytes] = []
    if end <= from_offset:
        return entries
    async with asyncio.timeout(WAIT_TIMEOUT_S), tail_of(log, partition, from_offset, max_batch_entries) as batches:
        async for batch in batches:
            for offset, payload in batch:
                assert offset == from_offset + len(entries)
                entries.append(payload)
            if from_offset + len(entries) >= end:
                break
    return entries


async def fill(path: Path, count: int, limits: EmbeddedLogLimits | None = None, partition_count: int = 1) -> list[bytes]:
    """Create a log at `path` with `count` entries of 100 bytes in partition 0, one append each, and close it."""
    log = await EmbeddedLog.open(path, partition_count, limits)
    entries = [entry(index) for index in range(count)]
    for index, payload in enumerate(entries):
        assert await log.append(0, [payload]) == index
    await log.close()
    return entries


def overwrite(path: Path, position: int, data: bytes) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        file.write(data)


def flip_byte(path: Path, position: int) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        original = file.read(1)
        file.seek(position)
        file.write(bytes([original[0] ^ 0xFF]))


async def test_reopen_after_clean_close_keeps_everything(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 3)
    await log.append(0, [b"a", b"b"])
    await log.append(2, [b"c"])
    await log.append(0, [b"d"])
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 3)
    assert log.dropped_tail_bytes == 0
    assert await read_all(log, 0) == [b"a", b"b", b"d"]
    assert await read_all(log, 1) == []
    assert await read_all(log, 2) == [b"c"]
    assert await log.append(0, [b"e"]) == 3
    assert await read_all(log, 0, 2) == [b"d", b"e"]
    await log.close()


async def test_truncated_tail_is_dropped_and_appends_continue(tmp_path: Path) -> None:
    entries = await fill(tmp_path, 20)
    segment = segment_path(tmp_path, 0)
    os.truncate(segment, segment.stat().st_size - MARKER_BYTES - 7)
    log = await EmbeddedLog.open(tmp_path, 1)
    assert log.dropped_tail_bytes == FRAME_HEADER_BYTES + 100 - 7
    assert await read_all(log, 0) == entries[:19]
    assert await log.append(0, [b"after"]) == 19
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert log.dropped_tail_bytes == 0
    assert await read_all(log, 0) == [*entries[:19], b"after"]
    await log.close()


async def test_truncated_header_is_dropped(tmp_path: Path) -> None:
    entries = await fill(tmp_path, 5)
    segment = segment_path(tmp_path, 0)
    os.truncate(segment, 4 * ONE_ENTRY_GROUP_BYTES + 5)
    log = await EmbeddedLog.open(tmp_path, 1)
    assert log.dropped_tail_bytes == 5
    assert await read_all(log, 0) == entries[:4]
    await log.close()


async def test_a_group_whose_marker_is_torn_keeps_its_intact_entries(tmp_path: Path) -> None:
    entries = await fill(tmp_path, 5)
    segment = segment_path(tmp_path, 0)
    os.truncate(segment, segment.stat().st_size - 3)
    log = await EmbeddedLog.open(tmp_path, 1)
    assert log.dropped_tail_bytes == MARKER_BYTES - 3
    assert await read_all(log, 0) == entries
    await log.close()


async def test_flipped_byte_in_last_entry_is_dropped(tmp_path: Path) -> None:
    entries = await fill(tmp_path, 20)
    segment = segment_path(tmp_path, 0)
    flip_byte(segment, segment.stat().st_size - MARKER_BYTES - 1)
    log = await EmbeddedLog.open(tmp_path, 1)
    assert log.dropped_tail_bytes == ONE_ENTRY_GROUP_BYTES
    assert await read_all(log, 0) == entries[:19]
    assert await log.append(0, [b"after"]) == 19
    await log.close()


async def test_flipped_length_in_last_entry_is_dropped(tmp_path: Path) -> None:
    entries = await fill(tmp_path, 20)
    segment = segment_path(tmp_path, 0)
    flip_byte(segment, segment.stat().st_size - ONE_ENTRY_GROUP_BYTES + 3)  # low byte of the length field
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == entries[:19]
    await log.close()


async def test_a_torn_last_group_is_dropped_even_if_later_pages_of_it_reached_the_disk(tmp_path: Path) -> None:
    """A crash before the sync can persist the pages of the last group out of order: its marker, but not its first entry."""
    log = await EmbeddedLog.open(tmp_path, 1)
    await log.append(0, [entry(0)])
    await log.append(0, [entry(index) for index in range(1, 40)])
    await log.close()
    overwrite(segment_path(tmp_path, 0), ONE_ENTRY_GROUP_BYTES + FRAME_HEADER_BYTES, bytes(100))  # that page never made it
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [entry(0)]
    assert log.dropped_tail_bytes == 39 * (FRAME_HEADER_BYTES + 100) + MARKER_BYTES
    await log.close()


async def test_corruption_in_the_middle_of_the_last_segment_fails_loudly(tmp_path: Path) -> None:
    """Default limits: a torn tail may be as large as one 32 MiB append, yet a later commit group proves this one was synced."""
    entries = await fill(tmp_path, 100)
    segment = segment_path(tmp_path, 0)
    flip_byte(segment, 90 * ONE_ENTRY_GROUP_BYTES + FRAME_HEADER_BYTES + 50)
    message = (
        f"log segment {segment} is corrupt at byte {90 * ONE_ENTRY_GROUP_BYTES}: a frame whose checksum does not match. "
        f"This is not a torn write, because a later commit group, synced after this one, follows at byte {91 * ONE_ENTRY_GROUP_BYTES - MARKER_BYTES + ONE_ENTRY_GROUP_BYTES}"
    )
    with pytest.raises(LogCorruptError) as raised:
        await EmbeddedLog.open(tmp_path, 1)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "--truncate-corrupt-tail" in str(raised.value) and "restore the data dir" in str(raised.value)
    with pytest.raises(LogCorruptError):  # the failed open released the lock: the error repeats, not "in use"
        await EmbeddedLog.open(tmp_path, 1)
    assert segment.stat().st_size == 100 * ONE_ENTRY_GROUP_BYTES, "nothing was cut"
    log = await EmbeddedLog.open(tmp_path, 1, truncate_corrupt_tail=True)
    assert log.truncated_corrupt_bytes == 10 * ONE_ENTRY_GROUP_BYTES
    assert await read_all(log, 0) == entries[:90]
    assert await log.append(0, [b"after"]) == 90
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [*entries[:90], b"after"]
    await log.close()


async def test_corruption_at_the_end_of_an_earlier_segment_fails_loudly(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=1000)
    entries = await fill(tmp_path, 30, limits)
    segments = list_segment_numbers(tmp_path)
    assert len(segments) >= 3
    first_segment = segment_path(tmp_path, 0)
    flip_byte(first_segment, first_segment.stat().st_size - MARKER_BYTES - 1)
    with pytest.raises(LogCorruptError, match=f"not the last segment \\({len(segments) - 1} segments follow it\\)"):
        await EmbeddedLog.open(tmp_path, 1, limits)
    log = await EmbeddedLog.open(tmp_path, 1, limits, truncate_corrupt_tail=True)
    kept = first_segment.stat().st_size // ONE_ENTRY_GROUP_BYTES
    assert list_segment_numbers(tmp_path) == [0]
    assert await read_all(log, 0) == entries[:kept]
    await log.close()


async def test_a_log_of_format_version_1_without_markers_is_read_and_upgraded(tmp_path: Path) -> None:
    (tmp_path / "duro-log.json").write_text('{"format": "duro-embedded-log", "format_version": 1, "partition_count": 1}')
    frames = bytearray()
    for offset in range(3):
        payload = entry(offset)
        frames += FRAME_HEADER.pack(len(payload), frame_crc(len(payload), 0, offset, payload), 0, offset) + payload
    segment_path(tmp_path, 0).write_bytes(bytes(frames[:-5]))  # and a torn tail, judged by the size rule alone
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [entry(0), entry(1)]
    assert await log.append(0, [b"new"]) == 2
    await log.close()
    assert '"format_version": 2' in (tmp_path / "duro-log.json").read_text()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [entry(0), entry(1), b"new"]
    await log.close()


async def test_missing_segment_fails_loudly(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=1000)
    await fill(tmp_path, 30, limits)
    segment_path(tmp_path, 1).unlink()
    with pytest.raises(LogCorruptError, match="missing segment 1"):
        await EmbeddedLog.open(tmp_path, 1, limits)


async def test_segments_without_metadata_are_refused(tmp_path: Path) -> None:
    await fill(tmp_path, 3)
    (tmp_path / "duro-log.json").unlink()
    with pytest.raises(LogCorruptError, match="no duro-log.json"):
        await EmbeddedLog.open(tmp_path, 1)


async def test_wrong_partition_count_is_refused(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 4)
    await log.close()
    with pytest.raises(LogError, match="created with 4 partitions but was opened with partition_count=8"):
        await EmbeddedLog.open(tmp_path, 8)
    log = await EmbeddedLog.open(tmp_path, 4)
    await log.close()


async def test_second_opener_is_refused(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 2)
    with pytest.raises(LogError, match=rf"is in use by another duro process \(pid {os.getpid()}\)"):
        await EmbeddedLog.open(tmp_path, 2)
    await log.append(0, [b"still works"])
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 2)
    assert await read_all(log, 0) == [b"still works"]
    await log.close()


async def test_segment_rollover_and_reading_across_segments(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=2048, max_cached_bytes=1, max_read_batch_bytes=1024)
    log = await EmbeddedLog.open(tmp_path, 2, limits)
    expected: dict[int, list[bytes]] = {0: [], 1: []}
    for index in range(200):
        partition = index % 3 % 2
        batch = [entry(index * 10 + item, size=40 + index % 50) for item in range(1 + index % 4)]
        await log.append(partition, batch)
        expected[partition].extend(batch)
    segments = list_segment_numbers(tmp_path)
    assert len(segments) > 10
    assert all(segment_path(tmp_path, number).stat().st_size <= 2048 for number in segments)
    for partition in range(2):
        assert await read_all(log, partition, max_batch_entries=5) == expected[partition]
        assert await read_all(log, partition, from_offset=77) == expected[partition][77:]
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 2, limits)
    for partition in range(2):
        assert await read_all(log, partition) == expected[partition]
    await log.close()


async def test_an_append_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=1000)
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    await log.append(0, [b"small"])
    await log.append(0, [bytes(5000)])
    await log.append(0, [b"after"])
    assert len(list_segment_numbers(tmp_path)) == 3
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    assert await read_all(log, 0) == [b"small", bytes(5000), b"after"]
    await log.close()


async def test_append_larger_than_max_append_bytes_is_refused(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 1, EmbeddedLogLimits(max_append_bytes=1000))
    with pytest.raises(ValueError, match="more than max_append_bytes=1000"):
        await log.append(0, [bytes(600), bytes(600)])
    assert await log.append(0, [bytes(900)]) == 0
    await log.close()


async def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_pending_appends must be an int >= 1, got 0"):
        EmbeddedLogLimits(max_pending_appends=0)


async def test_back_pressure_limits_pending_appends(tmp_path: Path) -> None:
    """With room for one pending append, every append gets a commit of its own."""
    log = await EmbeddedLog.open(tmp_path, 1, EmbeddedLogLimits(max_pending_appends=1))
    offsets = await asyncio.gather(*(log.append(0, [entry(index)]) for index in range(20)))
    assert sorted(offsets) == list(range(20))
    assert log.fsync_count == 20
    await log.close()


async def test_back_pressure_limits_pending_bytes(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 1, EmbeddedLogLimits(max_pending_bytes=3 * (FRAME_HEADER_BYTES + 100)))
    offsets = await asyncio.gather(*(log.append(0, [entry(index)]) for index in range(30)))
    assert sorted(offsets) == list(range(30))
    assert log.fsync_count >= 10, "at most three appends fit in one commit"
    await log.close()


async def test_group_commit_delay_gathers_staggered_appends(tmp_path: Path) -> None:
    log = await EmbeddedLog.open(tmp_path, 1, EmbeddedLogLimits(max_group_commit_delay_us=300_000))

    async def staggered(index: int) -> int:
        await asyncio.sleep(index * 0.005)
        return await log.append(0, [entry(index)])

    await asyncio.gather(*(staggered(index) for index in range(10)))
    assert log.fsync_count <= 2
    await log.close()


class SlowDisk:
    """Holds every synced write of the writer thread (`os.pwritev` with RWF_DSYNC) until `release` (a disk that is slow to sync)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._real_pwritev = os.pwritev
        self._gate = threading.Event()
        self.entered = threading.Event()
        monkeypatch.setattr(os, "pwritev", self._pwritev)

    def _pwritev(self, fd: int, buffers: Sequence[memoryview], offset: int, flags: int = 0) -> int:
        self.entered.set()
        if not self._gate.wait(WAIT_TIMEOUT_S):
            raise TimeoutError("SlowDisk was never released")
        return self._real_pwritev(fd, buffers, offset, flags)

    def release(self) -> None:
        self._gate.set()


async def wait_for_thread_event(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_TIMEOUT_S), "the writer thread never got there"


async def test_readers_never_see_entries_before_they_are_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = await EmbeddedLog.open(tmp_path, 1)
    disk = SlowDisk(monkeypatch)
    tailer = asyncio.create_task(read_all_from_tail(log, 1))
    append = asyncio.create_task(log.append(0, [b"slow"]))
    await wait_for_thread_event(disk.entered)
    await asyncio.sleep(0.05)
    assert not tailer.done() and not append.done()
    assert await log.end_offset(0) == 0
    disk.release()
    assert await append == 0
    assert await tailer == [(0, b"slow")]
    await log.close()


async def read_all_from_tail(log: EmbeddedLog, count: int) -> list[tuple[int, bytes]]:
    async with asyncio.timeout(WAIT_TIMEOUT_S), tail_of(log, 0, 0) as batches:
        async for batch in batches:
            return batch[:count]
    raise AssertionError("a tail ended")


async def test_close_finishes_the_commit_in_flight_and_fails_queued_appends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = await EmbeddedLog.open(tmp_path, 1)
    disk = SlowDisk(monkeypatch)
    in_flight = asyncio.create_task(log.append(0, [b"in flight"]))
    await wait_for_thread_event(disk.entered)
    queued = [asyncio.create_task(log.append(0, [entry(index)])) for index in range(5)]
    await asyncio.sleep(0.01)
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.01)
    for task in queued:
        with pytest.raises(LogClosedError, match="it was not written"):
            await task
    assert not closing.done(), "close waits for the commit in flight"
    disk.release()
    assert await in_flight == 0
    await closing
    monkeypatch.undo()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [b"in flight"]
    await log.close()


async def test_a_failed_sync_fails_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = await EmbeddedLog.open(tmp_path, 1)
    await log.append(0, [b"durable"])

    def failing_synced_write(fd: int, buffers: Sequence[memoryview], offset: int, flags: int = 0) -> int:
        assert flags & os.RWF_DSYNC, "the writer syncs every write it makes"
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "pwritev", failing_synced_write)
    with pytest.raises(LogError, match="failed to write or sync.*reopen the log"):
        await log.append(0, [b"doomed"])
    with pytest.raises(LogError, match="failed to write or sync"):
        await log.append(0, [b"refused"])
    with pytest.raises(LogError, match="failed to write or sync"):
        await read_all(log, 0)
    await log.close()
    monkeypatch.undo()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert (await read_all(log, 0))[0] == b"durable"
    await log.close()


async def test_without_rwf_dsync_a_group_is_written_then_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the platform lacks RWF_DSYNC (not Linux), each group is written with pwrite, then synced, before it is acknowledged."""
    calls: list[str] = []
    real_pwrite, real_sync = os.pwrite, embedded_files.sync_data

    def recording_pwrite(fd: int, data: memoryview, offset: int) -> int:
        calls.append("write")
        return real_pwrite(fd, data, offset)

    def recording_sync(fd: int) -> None:
        calls.append("sync")
        real_sync(fd)

    def no_pwritev(*args: object) -> int:
        raise AssertionError("pwritev with RWF_DSYNC used though the platform has no RWF_DSYNC")

    monkeypatch.setattr(embedded_files, "SYNCED_WRITE_FLAG", None)
    monkeypatch.setattr(embedded_files, "sync_data", recording_sync)
    monkeypatch.setattr(os, "pwrite", recording_pwrite)
    monkeypatch.setattr(os, "pwritev", no_pwritev)
    log = await EmbeddedLog.open(tmp_path, 1)
    await log.append(0, [b"first", b"second"])
    await log.append(0, [b"third"])
    await log.close()
    assert calls.count("sync") >= 2 and calls[-1] == "sync", calls
    monkeypatch.undo()
    log = await EmbeddedLog.open(tmp_path, 1)
    assert await read_all(log, 0) == [b"first", b"second", b"third"]
    await log.close()


async def test_tail_reads_old_entries_from_disk_then_follows_from_memory(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_cached_bytes=50 * 200)  # about the last 50 entries stay in memory
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    for start in range(0, 500, 50):
        await log.append(0, [entry(index) for index in range(start, start + 50)])
    received: list[bytes] = []
    async with asyncio.timeout(WAIT_TIMEOUT_S), tail_of(log, 0, 0, 64) as batches:
        async for batch in batches:
            received.extend(payload for _, payload in batch)
            if len(received) == 500:
                await log.append(0, [b"new"])
            if len(received) == 501:
                break
    assert received == [entry(index) for index in range(500)] + [b"new"]
    await log.close()


CRASH_CHILD = r"""
import asyncio, hashlib, sys
from wal.embedded import EmbeddedLog, EmbeddedLogLimits

def payload(task, seq):
    return hashlib.sha256(f"{task}:{seq}".encode()).digest() * (1 + seq % 20)

async def main(path):
    log = await EmbeddedLog.open(path, 4, EmbeddedLogLimits(max_segment_bytes=64 * 1024))
    print("ready", flush=True)

    async def appender(task):
        for seq in range(10_000_000):
            partition = (task + seq) % 4
            offset = await log.append(partition, [payload(task, seq)])
            sys.stdout.write(f"{partition} {offset} {task} {seq}\n")
            sys.stdout.flush()

    await asyncio.gather(*(appender(task) for task in range(8)))

asyncio.run(main(sys.argv[1]))
"""


def crash_payload(task: int, seq: int) -> bytes:
    return hashlib.sha256(f"{task}:{seq}".encode()).digest() * (1 + seq % 20)


def read_acknowledgements(process: subprocess.Popen[str], minimum: int, deadline: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while len(lines) < minimum:
        assert time.monotonic() < deadline, f"the child acknowledged only {len(lines)} appends in time"
        line = process.stdout.readline()
        assert line, f"the child exited early with {process.poll()}"
        lines.append(line)
    return lines


def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    log_path = tmp_path / "log"
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY_ROOT))
    process = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(log_path)], stdout=subprocess.PIPE, text=True, cwd=REPOSITORY_ROOT, env=environment
    )
    try:
        deadline = time.monotonic() + 30
        assert read_acknowledgements(process, 1, deadline) == ["ready\n"]
        with pytest.raises(LogError, match=rf"in use by another duro process \(pid {process.pid}\)"):
            asyncio.run(EmbeddedLog.open(log_path, 4))
        lines = read_acknowledgements(process, 3000, deadline)
        process.send_signal(signal.SIGKILL)
        remaining, _ = process.communicate(timeout=WAIT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_TIMEOUT_S)
    assert process.returncode == -signal.SIGKILL
    lines += remaining.splitlines(keepends=True)
    acknowledged = [tuple(int(field) for field in line.split()) for line in lines if line.endswith("\n")]
    asyncio.run(_check_acknowledged(log_path, acknowledged))


async def _check_acknowledged(log_path: Path, acknowledged: list[tuple[int, ...]]) -> None:
    log = await EmbeddedLog.open(log_path, 4, EmbeddedLogLimits(max_segment_bytes=64 * 1024))
    assert len(list_segment_numbers(log_path)) > 1, "the crash test should span segments"
    stored = {partition: await read_all(log, partition) for partition in range(4)}
    for partition, offset, task, seq in acknowledged:
        assert offset < len(stored[partition]), f"acknowledged partition {partition} offset {offset} is missing"
        assert stored[partition][offset] == crash_payload(task, seq), f"partition {partition} offset {offset} differs"
    assert await log.append(0, [b"after the crash"]) == len(stored[0])
    await log.close()


class FullDisk:
    """The writer thread's synced writes (`os.pwritev`) fail with ENOSPC after `room` more bytes (a disk that fills), until `free()`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, room: int) -> None:
        self._real_pwritev = os.pwritev
        self.room: int | None = room  # None: unlimited
        monkeypatch.setattr(os, "pwritev", self._pwritev)

    def _pwritev(self, fd: int, buffers: Sequence[memoryview], offset: int, flags: int = 0) -> int:
        data = b"".join(bytes(buffer) for buffer in buffers)
        if self.room is not None and len(data) > self.room:
            written = self._real_pwritev(fd, [data[: self.room]], offset, flags) if self.room else 0
            self.room = 0
            if written:
                return written  # a short write; the next call meets the full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.room is not None:
            self.room -= len(data)
        return self._real_pwritev(fd, [data], offset, flags)

    def free(self) -> None:
        self.room = None


async def test_a_full_disk_fails_the_append_cuts_what_was_written_and_the_log_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await EmbeddedLog.open(tmp_path, 2)
    assert await log.append(0, [b"before"]) == 0
    size_before = segment_path(tmp_path, 0).stat().st_size
    disk = FullDisk(monkeypatch, room=30)  # less than one entry and its marker
    with pytest.raises(LogFullError, match="the disk is full .*this append was not written"):
        await log.append(0, [entry(1)])
    assert segment_path(tmp_path, 0).stat().st_size == size_before, "the partial write was cut off"
    with pytest.raises(LogFullError):
        await log.append(1, [b"also refused"])
    disk.free()
    assert await log.append(0, [b"after"]) == 1, "the refused append's offset is given out again"
    assert await log.append(1, [b"first of 1"]) == 0
    await log.close()
    monkeypatch.undo()
    log = await EmbeddedLog.open(tmp_path, 2)
    assert log.dropped_tail_bytes == 0
    assert await read_all(log, 0) == [b"before", b"after"]
    assert await read_all(log, 1) == [b"first of 1"]
    await log.close()


async def test_a_group_split_by_a_rollover_keeps_what_was_synced_before_the_disk_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=3 * ONE_ENTRY_GROUP_BYTES)
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    assert await log.append(0, [entry(0)]) == 0
    assert await log.append(0, [entry(1)]) == 1
    real_open = os.open

    def no_new_files(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT and not Path(path).exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_new_files)
    # One commit group: the first append still fits in segment 0, the second needs segment 1, which cannot be created.
    results = await asyncio.gather(log.append(0, [entry(2)]), log.append(0, [entry(3)]), return_exceptions=True)
    assert results[0] == 2
    assert isinstance(results[1], LogFullError)
    monkeypatch.undo()
    assert await log.append(0, [entry(3)]) == 3
    await log.close()
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    assert await read_all(log, 0) == [entry(index) for index in range(4)]
    await log.close()


# ---------------------------------------------------------------- trimming


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.wal"))


def test_trim_plan_deletes_only_a_prefix_of_segments_wholly_below_every_partitions_trim_point() -> None:
    from wal.embedded import segment_trim_plan

    last = {0: {0: 9, 1: 4}, 1: {0: 19}, 2: {1: 9}, 3: {0: 29, 1: 14}}
    assert segment_trim_plan(0, 4, last, [20, 10]) == [0, 1, 2], "segment 3 holds p0 offset 29 >= 20"
    assert segment_trim_plan(0, 4, last, [20, 5]) == [0, 1], "segment 2 holds p1 offset 9, not below 5"
    assert segment_trim_plan(0, 4, last, [20, 0]) == [], "p1 has no trim point, so segment 0 (which holds p1) stays"
    assert segment_trim_plan(0, 4, last, [10, 100]) == [0], "segment 1 holds p0 offset 19"
    assert segment_trim_plan(0, 2, last, [100, 100]) == [0, 1], "the segment being written (2) never goes"
    assert segment_trim_plan(1, 4, last, [100, 100]) == [1, 2, 3], "segments before the first are gone already"
    assert segment_trim_plan(0, 4, {0: {}, 1: {0: 5}}, [0, 0]) == [0], "an empty segment holds nothing back"


async def test_trim_deletes_segments_and_a_reopened_log_keeps_offsets(tmp_path: Path) -> None:
    limits = EmbeddedLogLimits(max_segment_bytes=16 * 1024)
    log = await EmbeddedLog.open(tmp_path, 2, limits)
    for index in range(200):
        await log.append(index % 2, [entry(index, size=500)])
    segments_before = segment_files(tmp_path)
    await log.trim(0, 60)
    await log.trim(1, 30)  # p1 holds segments back until its own trim point
    assert await log.start_offset(0) <= 60 and await log.start_offset(1) <= 30
    segments_after = segment_files(tmp_path)
    assert 0 < len(segments_after) < len(segments_before)
    assert log.trimmed_segment_count == len(segments_before) - len(segments_after)
    starts = [await log.start_offset(p) for p in range(2)]
    assert starts[0] > 0 and starts[1] > 0
    await log.close()
    reopened = await EmbeddedLog.open(tmp_path, 2, limits)
    try:
        assert [await reopened.start_offset(p) for p in range(2)] == starts
        assert [await reopened.end_offset(p) for p in range(2)] == [100, 100]
        tail = await read_all(reopened, 0, starts[0])
        assert tail == [entry(2 * offset, size=500) for offset in range(starts[0], 100)]
        assert await reopened.append(1, [b"next"]) == 100
    finally:
        await reopened.close()


async def test_a_trim_interrupted_before_deleting_is_finished_on_open(tmp_path: Path) -> None:
    from wal.embedded_files import LogStart, decode_position, write_log_start

    limits = EmbeddedLogLimits(max_segment_bytes=8 * 1024)
    await fill(tmp_path, 400, limits)
    segments = segment_files(tmp_path)
    assert len(segments) > 3
    log = await EmbeddedLog.open(tmp_path, 1, limits)
    first_kept_offset = next(offset for offset, position in enumerate(log._index[0]) if decode_position(position)[0] == 2)
    await log.close()
    write_log_start(tmp_path, LogStart(2, (first_kept_offset,)))  # the start was recorded, then the process died
    reopened = await EmbeddedLog.open(tmp_path, 1, limits)
    try:
        assert not segments[0].exists() and not segments[1].exists() and segments[2].exists()
        assert await reopened.start_offset(0) == first_kept_offset
        assert await read_all(reopened, 0, first_kept_offset) == [entry(i) for i in range(first_kept_offset, 400)]
    finally:
        await reopened.close()


def _appended(sample: str) -> float:
    return REGISTRY.get_sample_value(sample, {"backend": "embedded"}) or 0.0


async def test_an_append_whose_caller_is_cancelled_once_queued_is_still_measured_when_durable(tmp_path: Path) -> None:
    """The append metrics count what became durable: a leader cancels an attempt whose end it applied while the attempt still awaits its append."""
    log = await EmbeddedLog.open(tmp_path, 1)
    appends, records = _appended("duro_log_append_duration_seconds_count"), _appended("duro_log_append_batch_records_sum")
    caller = asyncio.create_task(log.append(0, [b"a", b"b"]))
    await asyncio.sleep(0)  # the append is queued
    caller.cancel()
    written: list[bytes] = []
    async with asyncio.timeout(WAIT_TIMEOUT_S), tail_of(log, 0, 0) as batches:
        async for batch in batches:  # a tail sees entries once they are durable
            written.extend(payload for _, payload in batch)
            if len(written) >= 2:
                break
    assert written == [b"a", b"b"], "a queued append is written although its caller went away"
    assert _appended("duro_log_append_duration_seconds_count") - appends == 1
    assert _appended("duro_log_append_batch_records_sum") - records == 2
    assert await log.append(0, [b"c"]) == 2
    assert _appended("duro_log_append_duration_seconds_count") - appends == 2
    await log.close()
    with contextlib.suppress(asyncio.CancelledError):
        await caller


def test_entries_dropped_from_the_recent_cache_are_released_at_once() -> None:
    """The cache's byte bound holds in memory: a dropped entry's bytes are freed when dropped, not when the list is next compacted."""
    cache = _RecentEntries(first_offset=0)
    entries = [f"entry-{index}".encode() * 10 for index in range(3000)]
    cache.add(entries)
    before = [sys.getrefcount(entry) for entry in entries]
    for _ in range(1000):  # below the compaction point: the list keeps its 3,000 slots
        cache.drop_oldest()
    after = [sys.getrefcount(entry) for entry in entries]
    released = [b - a for b, a in zip(before, after, strict=True)]
    assert released == [1] * 1000 + [0] * 2000, "each dropped entry lost the cache's reference; the others kept theirs"
    assert cache.first_offset == 1000
    assert cache.read(1000, 2, 1 << 20) == [(1000, entries[1000]), (1001, entries[1001])]
