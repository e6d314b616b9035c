"""`EmbeddedLog`: the single-node `Log` of `duro serve`, a crash-safe write-ahead log in one local directory.

All partitions share one stream of segment files (`wal.embedded_files` describes
the format), so that one fsync commits a whole group of appends across
partitions. Appends wait in a bounded queue; one writer task takes everything
queued (up to `max_commit_group_bytes`), writes and syncs it in a writer thread
while the event loop runs on, then resolves the waiting appends and wakes the
tailing readers. An append returns only after its entries were synced, and a
reader only ever sees synced entries.

In memory the log keeps, per partition, the position of every entry (8 bytes
each) and a small cache of recent entries (`max_cached_bytes` in all) from which
tailing readers are served; older entries are read back from the files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from array import array
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from wal.append_budget import AppendBudget
from wal.embedded_files import (
    MAX_SEGMENT_BYTES,
    AppendBatch,
    LogStart,
    RecoveredLog,
    SegmentWriter,
    decode_position,
    delete_segments,
    framed_bytes_of,
    load_or_create_metadata,
    lock_directory,
    read_entries,
    recover,
    write_log_start,
)
from wal.log import AppendTooLargeError, LogClosedError, LogError, LogFullError, LogTrimmedError
from wal.log_arguments import check_partition, check_partition_count, check_tail_arguments, entries_as_bytes
from wal.metrics import AppendMeter

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PENDING_APPENDS = 10_000
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_GROUP_COMMIT_DELAY_US = 0
DEFAULT_MAX_CACHED_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_APPEND_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_COMMIT_GROUP_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_READ_BATCH_BYTES = 4 * 1024 * 1024

_CACHED_ENTRY_OVERHEAD_BYTES = 64  # rough bookkeeping cost of one cached entry, counted against max_cached_bytes


@dataclass(frozen=True, slots=True)
class EmbeddedLogLimits:
    """The bounds of an embedded log; every one is configurable."""

    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES
    """A segment file is closed and a new one started once the next append would take it past this size."""
    max_pending_appends: int = DEFAULT_MAX_PENDING_APPENDS
    """Appends queued or being committed at once; further appends wait for room (back-pressure)."""
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    """Bytes of appends queued or being committed at once; further appends wait for room (one append always fits)."""
    max_group_commit_delay_us: int = DEFAULT_MAX_GROUP_COMMIT_DELAY_US
    """How long the writer waits for more appends before committing a group; 0 commits as soon as the last sync ended."""
    max_cached_bytes: int = DEFAULT_MAX_CACHED_BYTES
    """Recent entries kept in memory for tailing readers, all partitions together."""
    max_append_bytes: int = DEFAULT_MAX_APPEND_BYTES
    """The largest one append may be on disk (payloads plus 18 header bytes per entry)."""
    max_commit_group_bytes: int = DEFAULT_MAX_COMMIT_GROUP_BYTES
    """The writer stops adding appends to a group at this size (a group always takes at least one append)."""
    max_read_batch_bytes: int = DEFAULT_MAX_READ_BATCH_BYTES
    """A batch a reader gets from disk or cache stops growing at this size (it always holds at least one entry)."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            minimum = 0 if name == "max_group_commit_delay_us" else 1
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.max_segment_bytes > MAX_SEGMENT_BYTES:
            raise ValueError(f"max_segment_bytes must be at most {MAX_SEGMENT_BYTES}, got {self.max_segment_bytes}")

    @property
    def max_torn_tail_bytes(self) -> int:
        """The most a crash can leave unsynced at the end of the last segment: one commit group."""
        return max(self.max_commit_group_bytes, self.max_append_bytes)


@dataclass(slots=True)
class _PendingAppend:
    partition: int
    entries: list[bytes]
    framed_bytes: int
    result: asyncio.Future[int]
    started: float  # time.perf_counter() when it was queued
    settled: bool = False


class _RecentEntries:
    """The most recent entries of one partition: a contiguous run ending at its durable end."""

    __slots__ = ("_entries", "_start", "first_offset")

    def __init__(self, first_offset: int) -> None:
        self.first_offset = first_offset
        self._entries: list[bytes] = []
        self._start = 0

    def add(self, entries: Sequence[bytes]) -> None:
        self._entries.extend(entries)

    def drop_oldest(self) -> None:
        self._entries[self._start] = b""  # its bytes go now; the list itself is compacted once half of it is dropped
        self._start += 1
        self.first_offset += 1
        if self._start > 1024 and self._start * 2 > len(self._entries):
            del self._entries[: self._start]
            self._start = 0

    def read(self, from_offset: int, max_entries: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Up to `max_entries` entries from `from_offset` on (which must be cached), stopping after `max_bytes`."""
        assert from_offset >= self.first_offset, "reading below the cache"
        batch: list[tuple[int, bytes]] = []
        batch_bytes = 0
        start = self._start + from_offset - self.first_offset
        for index in range(start, min(start + max_entries, len(self._entries))):
            if batch_bytes >= max_bytes:
                break
            entry = self._entries[index]
            batch.append((from_offset + len(batch), entry))
            batch_bytes += len(entry)
        return batch


class EmbeddedLog:
    """A `Log` whose partitions live in one local directory; see the module docstring.

    Open it with `await EmbeddedLog.open(path, partition_count)`; one process at a
    time may have a directory open.
    """

    def __init__(self, directory: Path, partition_count: int, limits: EmbeddedLogLimits, lock_fd: int, recovered: RecoveredLog) -> None:
        """Use `open`; this wires an already locked, recovered directory."""
        self._directory = directory
        self._partition_count = partition_count
        self._limits = limits
        self._lock_fd = lock_fd
        self._meter = AppendMeter("embedded")
        self.dropped_tail_bytes = recovered.dropped_tail_bytes
        self.truncated_corrupt_bytes = recovered.truncated_corrupt_bytes
        self._index = recovered.index
        start = recovered.start or LogStart.initial(partition_count)
        self._start_offsets = list(start.start_offsets)  # the first offset each partition's index holds
        self._first_segment = start.first_segment
        self._segment_last_offsets = recovered.segment_last_offsets  # segment -> partition -> last offset in it
        self._keep_from = [0] * partition_count  # trim(): entries below these offsets may go
        self._trim_lock = asyncio.Lock()
        self.trimmed_segment_count = 0
        self._durable_end = [base + len(positions) for base, positions in zip(self._start_offsets, recovered.index, strict=True)]
        self._next_offset = list(self._durable_end)
        self._recent = [_RecentEntries(end) for end in self._durable_end]
        self._recent_order: deque[tuple[int, int]] = deque()  # (partition, cached bytes), oldest first
        self._recent_bytes = 0
        self._appended = [asyncio.Event() for _ in range(partition_count)]
        self._queue: deque[_PendingAppend] = deque()
        self._queue_has_work = asyncio.Event()
        self._append_budget = AppendBudget(limits.max_pending_appends, limits.max_pending_bytes)
        self._in_flight: list[_PendingAppend] = []
        self._closed = False
        self._failure: LogError | None = None
        self.disk_full_count = 0  # commit groups that failed for want of space since the log was opened
        self._write_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duro-wal-writer")
        self._segment_writer = SegmentWriter(
            directory, recovered.last_segment_number, recovered.last_segment_bytes, limits.max_segment_bytes
        )
        self._writer_task = asyncio.create_task(self._write_loop(), name=f"duro-wal-writer {directory}")
        self._writer_task.add_done_callback(self._on_writer_done)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        partition_count: int,
        limits: EmbeddedLogLimits | None = None,
        truncate_corrupt_tail: bool = False,
    ) -> EmbeddedLog:
        """Open the log in directory `path`, creating it if needed, and recover it after a crash.

        Raises LogError if another process has the directory open or it was created
        with another partition count, and LogCorruptError if its files are damaged
        beyond a torn tail. With `truncate_corrupt_tail` the log is instead cut
        at the first damaged frame (everything after it is lost, and logged).
        """
        check_partition_count(partition_count)
        limits = limits or EmbeddedLogLimits()
        directory = Path(path)
        lock_fd, recovered = await asyncio.to_thread(_prepare_directory, directory, partition_count, limits, truncate_corrupt_tail)
        try:
            return cls(directory, partition_count, limits, lock_fd, recovered)
        except BaseException:
            os.close(lock_fd)
            raise

    @property
    def max_append_bytes(self) -> int:
        return self._limits.max_append_bytes

    @property
    def partition_count(self) -> int:
        return self._partition_count

    @property
    def path(self) -> Path:
        return self._directory

    @property
    def fsync_count(self) -> int:
        """How many times the log synced its segment files since it was opened (one per commit group, plus rollovers)."""
        return self._segment_writer.sync_count

    # ------------------------------------------------------------ appending

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        """Append entries to one partition, in order; return the offset of the last one once all are synced.

        Waits for room while `max_pending_appends` appends (or `max_pending_bytes`)
        are pending. Raises LogClosedError if the log is or gets closed before the
        entries were written (they were not, so a retry elsewhere is safe), and
        LogError if the log failed. Cancelling the caller after the append was
        queued does not withdraw the entries: they may still become durable.
        """
        check_partition(partition, self._partition_count)
        payloads = entries_as_bytes(entries)
        framed_bytes = framed_bytes_of(payloads)
        if framed_bytes > self._limits.max_append_bytes:
            raise AppendTooLargeError(
                f"an append of {len(payloads)} entries takes {framed_bytes} bytes with headers, "
                f"more than max_append_bytes={self._limits.max_append_bytes}; split it or raise the limit"
            )
        self._raise_if_unusable()
        await self._append_budget.acquire(framed_bytes)
        if self._closed or self._failure is not None:
            self._append_budget.release(framed_bytes)
            self._raise_if_unusable()
        result: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_PendingAppend(partition, payloads, framed_bytes, result, time.perf_counter()))
        self._queue_has_work.set()
        return await result

    def _raise_if_unusable(self) -> None:
        if self._failure is not None:
            raise LogError(*self._failure.args)
        if self._closed:
            raise LogClosedError(f"embedded log at {self._directory} is closed")

    async def _write_loop(self) -> None:
        """Commit queued appends group by group until the log closes or a write fails."""
        delay_s = self._limits.max_group_commit_delay_us / 1_000_000
        while not self._closed and self._failure is None:
            if not self._queue:
                self._queue_has_work.clear()
                await self._queue_has_work.wait()
                continue
            if delay_s > 0:
                await asyncio.sleep(delay_s)
                if self._closed:
                    return
            await self._commit(self._take_group())

    def _take_group(self) -> list[tuple[_PendingAppend, AppendBatch]]:
        """Take appends off the queue up to `max_commit_group_bytes` and give them their offsets."""
        group: list[tuple[_PendingAppend, AppendBatch]] = []
        group_bytes = 0
        while self._queue and (not group or group_bytes + self._queue[0].framed_bytes <= self._limits.max_commit_group_bytes):
            pending = self._queue.popleft()
            first_offset = self._next_offset[pending.partition]
            self._next_offset[pending.partition] = first_offset + len(pending.entries)
            group.append((pending, AppendBatch(pending.partition, first_offset, pending.entries, pending.framed_bytes)))
            group_bytes += pending.framed_bytes
        return group

    async def _commit(self, group: list[tuple[_PendingAppend, AppendBatch]]) -> None:
        """Write and sync one group in the writer thread, then publish it.

        On a full disk the appends that did not become durable fail with
        LogFullError and their offsets are given out again; the log goes on.
        On any other write error the log fails.
        """
        batches = [batch for _, batch in group]
        self._in_flight = [pending for pending, _ in group]
        loop = asyncio.get_running_loop()
        try:
            positions, disk_full = await loop.run_in_executor(self._write_executor, self._segment_writer.commit, batches)
        except Exception as error:
            self._fail(
                LogError(
                    f"embedded log at {self._directory} failed to write or sync: {error!r}; "
                    "appends in flight may or may not be durable; reopen the log to recover"
                )
            )
            return
        for (pending, batch), batch_positions in zip(group, positions, strict=False):
            self._publish(batch, batch_positions)
            self._settle(pending, batch.first_offset + len(batch.entries) - 1, None)
        if disk_full is not None:
            self._refuse_unwritten(group[len(positions) :], disk_full)
        self._in_flight = []

    def _refuse_unwritten(self, unwritten: list[tuple[_PendingAppend, AppendBatch]], error: OSError) -> None:
        """The disk is full: fail appends that were not written and give their offsets out again (the log goes on)."""
        self.disk_full_count += 1
        failure = LogFullError(
            f"embedded log at {self._directory}: the disk is full ({error.strerror}); this append was not written,"
            " nothing of it is durable; retry once space is freed"
        )
        if self.disk_full_count == 1 or self.disk_full_count % 1000 == 0:
            logger.warning("%s (%d times so far)", failure, self.disk_full_count)
        for pending, batch in unwritten:
            self._next_offset[batch.partition] = min(self._next_offset[batch.partition], batch.first_offset)
            self._settle(pending, -1, failure)

    def _publish(self, batch: AppendBatch, positions: array[int]) -> None:
        """Make a synced batch visible to readers: index it, cache it, advance the durable end and wake the tailers."""
        partition = batch.partition
        assert self._durable_end[partition] == batch.first_offset, "batches of a partition become durable in offset order"
        self._index[partition].extend(positions)
        self._durable_end[partition] = batch.first_offset + len(batch.entries)
        if positions:  # an append is never split across segments
            segment = decode_position(positions[0])[0]
            self._segment_last_offsets.setdefault(segment, {})[partition] = self._durable_end[partition] - 1
        self._cache(partition, batch.entries)
        self._wake_tailers(partition)

    def _cache(self, partition: int, entries: Sequence[bytes]) -> None:
        self._recent[partition].add(entries)
        for entry in entries:
            cached_bytes = len(entry) + _CACHED_ENTRY_OVERHEAD_BYTES
            self._recent_order.append((partition, cached_bytes))
            self._recent_bytes += cached_bytes
        while self._recent_bytes > self._limits.max_cached_bytes:
            oldest_partition, cached_bytes = self._recent_order.popleft()
            self._recent[oldest_partition].drop_oldest()
            self._recent_bytes -= cached_bytes

    def _wake_tailers(self, partition: int) -> None:
        event = self._appended[partition]
        self._appended[partition] = asyncio.Event()
        event.set()

    def _settle(self, pending: _PendingAppend, last_offset: int, error: LogError | None) -> None:
        """Resolve one pending append (unless its caller gave up) and free its room; once only.

        Each caller gets an exception object of its own (same type and message as `error`).
        """
        if pending.settled:
            return
        pending.settled = True
        self._append_budget.release(pending.framed_bytes)
        if error is None:  # measured here, not by the caller: a caller cancelled once its entries are durable is still an append
            self._meter.observe(len(pending.entries), time.perf_counter() - pending.started)
        if pending.result.done():
            return
        if error is None:
            pending.result.set_result(last_offset)
        else:
            pending.result.set_exception(type(error)(*error.args))

    def _fail(self, failure: LogError) -> None:
        """The log can no longer write: fail every pending append and every reader with `failure`."""
        logger.error("%s", failure)
        self._failure = failure
        for pending in self._in_flight:
            self._settle(pending, -1, failure)
        self._in_flight = []
        self._fail_queued(failure)
        for partition in range(self._partition_count):
            self._wake_tailers(partition)

    def _fail_queued(self, error: LogError) -> None:
        while self._queue:
            self._settle(self._queue.popleft(), -1, error)

    def _on_writer_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._fail(LogError(f"embedded log at {self._directory}: its writer crashed: {task.exception()!r}"))

    # ------------------------------------------------------------ reading

    def tail(self, partition: int, from_offset: int, max_batch_entries: int = 512) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """Yield batches of (offset, entry) from `from_offset` on, forever, as they become durable.

        Old entries come from the files, recent ones from memory. Raises
        LogClosedError when the log closes. Cancelling the consuming task stops the iteration.
        """
        check_tail_arguments(partition, from_offset, max_batch_entries, self._partition_count)
        return self._tail(partition, from_offset, max_batch_entries)

    async def _tail(self, partition: int, offset: int, max_batch_entries: int) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        while True:
            self._raise_if_unusable()
            if offset < self._start_offsets[partition]:
                raise LogTrimmedError(
                    f"embedded log at {self._directory}: partition {partition} holds offsets from {self._start_offsets[partition]} on, "
                    f"offset {offset} was trimmed below a durable snapshot; restore that snapshot"
                )
            durable_end = self._durable_end[partition]
            if offset >= durable_end:
                await self._appended[partition].wait()
                continue
            batch = await self._read(partition, offset, min(durable_end, offset + max_batch_entries))
            offset += len(batch)
            yield batch

    async def _read(self, partition: int, offset: int, end_offset: int) -> list[tuple[int, bytes]]:
        """Durable entries offset..end_offset-1 (or a prefix of them), from the cache if it has them, else from disk."""
        recent = self._recent[partition]
        if offset >= recent.first_offset:
            return recent.read(offset, end_offset - offset, self._limits.max_read_batch_bytes)
        end_offset = min(end_offset, recent.first_offset)
        base = self._start_offsets[partition]
        positions = self._index[partition][offset - base : end_offset - base]
        return await asyncio.to_thread(read_entries, self._directory, partition, offset, positions, self._limits.max_read_batch_bytes)

    async def end_offset(self, partition: int) -> int:
        """One past the partition's last durable entry (0 if it has none).

        Appends still being committed are not counted; with none pending this is
        the offset the next appended entry will get.
        """
        check_partition(partition, self._partition_count)
        self._raise_if_unusable()
        return self._durable_end[partition]

    async def start_offset(self, partition: int) -> int:
        check_partition(partition, self._partition_count)
        return self._start_offsets[partition]

    # ------------------------------------------------------------ trimming

    async def trim(self, partition: int, before_offset: int) -> None:
        """Allow entries of `partition` below `before_offset` to go, and delete every segment all of whose entries may go.

        A segment goes only when, for every partition with entries in it, all
        of them lie below that partition's trim point (`segment_trim_plan`);
        the segment being written never goes. Where the log then starts is
        recorded (`duro-log-start.json`, synced) before any file is deleted.
        """
        check_partition(partition, self._partition_count)
        self._raise_if_unusable()
        self._keep_from[partition] = max(self._keep_from[partition], min(before_offset, self._durable_end[partition]))
        async with self._trim_lock:
            writing = self._segment_writer.segment_number
            doomed = segment_trim_plan(self._first_segment, writing, self._segment_last_offsets, self._keep_from)
            if not doomed:
                return
            start_offsets = list(self._start_offsets)
            for segment in doomed:
                for held, last_offset in self._segment_last_offsets[segment].items():
                    start_offsets[held] = max(start_offsets[held], last_offset + 1)
            start = LogStart(doomed[-1] + 1, tuple(start_offsets))
            await asyncio.to_thread(write_log_start, self._directory, start)
            for held, (old, new) in enumerate(zip(self._start_offsets, start_offsets, strict=True)):
                if new > old:
                    del self._index[held][: new - old]
            self._start_offsets = start_offsets
            self._first_segment = start.first_segment
            for segment in doomed:
                del self._segment_last_offsets[segment]
            await asyncio.to_thread(delete_segments, self._directory, doomed)
            self.trimmed_segment_count += len(doomed)
            logger.info("embedded log at %s: trimmed segments %d..%d", self._directory, doomed[0], doomed[-1])

    # ------------------------------------------------------------ closing

    async def close(self) -> None:
        """Finish the commit in flight, fail queued appends with LogClosedError, wake readers and release the directory.

        Appends that were queued but not yet written are not written. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        self._fail_queued(
            LogClosedError(f"embedded log at {self._directory} was closed before this append was written; it was not written")
        )
        self._queue_has_work.set()
        await asyncio.wait([self._writer_task])
        for partition in range(self._partition_count):
            self._wake_tailers(partition)
        await asyncio.get_running_loop().run_in_executor(self._write_executor, self._segment_writer.close)
        self._write_executor.shutdown(wait=True)
        os.close(self._lock_fd)


def _prepare_directory(
    directory: Path, partition_count: int, limits: EmbeddedLogLimits, truncate_corrupt_tail: bool
) -> tuple[int, RecoveredLog]:
    """Create and lock the directory, check its metadata and recover its segments (blocking)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_directory(directory)
    try:
        load_or_create_metadata(directory, partition_count)
        recovered = recover(directory, partition_count, limits.max_torn_tail_bytes, truncate_corrupt_tail)
    except BaseException:
        os.close(lock_fd)
        raise
    if recovered.dropped_tail_bytes:
        logger.warning("embedded log at %s: recovered after dropping %d torn bytes", directory, recovered.dropped_tail_bytes)
    return lock_fd, recovered


def segment_trim_plan(
    first_segment: int, writing_segment: int, segment_last_offsets: dict[int, dict[int, int]], keep_from: Sequence[int]
) -> list[int]:
    """The segments a trim may delete: the longest run from the first one in which every entry lies below its partition's trim point.

    The rule, for segment s: s is not the segment being written, every segment
    before it goes too (the log stays one run of segments), and for every
    partition p with entries in s, the last of them is below `keep_from[p]`.
    A partition with entries in s and no trim point (0) keeps s.
    """
    doomed: list[int] = []
    for segment in range(first_segment, writing_segment):
        last_offsets = segment_last_offsets.get(segment, {})
        if any(last_offset >= keep_from[partition] for partition, last_offset in last_offsets.items()):
            break
        doomed.append(segment)
    return doomed
