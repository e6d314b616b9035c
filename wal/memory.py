"""`MemoryLog`: an in-memory `Log` for unit tests of other modules, with the same semantics as the real backends but no durability.

An append is "durable" the moment it is stored, so it never waits; readers,
offsets, validation and closing behave as in `EmbeddedLog`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from wal.log import ENTRY_ALLOWANCE_BYTES, AppendTooLargeError, LogClosedError, LogTrimmedError
from wal.log_arguments import check_partition, check_partition_count, check_tail_arguments, entries_as_bytes

DEFAULT_MAX_APPEND_BYTES = 64 * 1024 * 1024


class MemoryLog:
    """A `Log` held in lists, one per partition. Everything appended stays in memory until the log is dropped."""

    def __init__(self, partition_count: int, max_append_bytes: int = DEFAULT_MAX_APPEND_BYTES) -> None:
        check_partition_count(partition_count)
        self._max_append_bytes = max_append_bytes
        self._partitions: list[list[bytes]] = [[] for _ in range(partition_count)]
        self._starts = [0] * partition_count  # the offset of each partition's first stored entry (trim moves it)
        self._appended = [asyncio.Event() for _ in range(partition_count)]
        self._closed = False

    @property
    def max_append_bytes(self) -> int:
        return self._max_append_bytes

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        """Append entries to one partition, in order; return the offset of the last one."""
        check_partition(partition, self.partition_count)
        payloads = entries_as_bytes(entries)
        framed_bytes = sum(len(p) for p in payloads) + ENTRY_ALLOWANCE_BYTES * len(payloads)
        if framed_bytes > self._max_append_bytes:
            raise AppendTooLargeError(f"an append of {framed_bytes} bytes exceeds max_append_bytes={self._max_append_bytes}")
        self._raise_if_closed()
        stored = self._partitions[partition]
        stored.extend(payloads)
        self._wake_tailers(partition)
        return self._starts[partition] + len(stored) - 1

    def tail(self, partition: int, from_offset: int, max_batch_entries: int = 512) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """Yield batches of (offset, entry) from `from_offset` on, forever; raises LogClosedError when the log closes."""
        check_tail_arguments(partition, from_offset, max_batch_entries, self.partition_count)
        return self._tail(partition, from_offset, max_batch_entries)

    async def _tail(self, partition: int, offset: int, max_batch_entries: int) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        while True:
            self._raise_if_closed()
            start = self._starts[partition]
            if offset < start:
                raise LogTrimmedError(f"memory log: partition {partition} holds offsets from {start} on, {offset} was trimmed")
            stored = self._partitions[partition]
            if offset >= start + len(stored):
                await self._appended[partition].wait()
                continue
            batch = list(enumerate(stored[offset - start : offset - start + max_batch_entries], offset))
            offset += len(batch)
            yield batch

    async def end_offset(self, partition: int) -> int:
        """The offset the next appended entry will get (0 for an empty partition)."""
        check_partition(partition, self.partition_count)
        self._raise_if_closed()
        return self._starts[partition] + len(self._partitions[partition])

    async def start_offset(self, partition: int) -> int:
        check_partition(partition, self.partition_count)
        return self._starts[partition]

    async def trim(self, partition: int, before_offset: int) -> None:
        """Drop the entries below `before_offset` at once."""
        check_partition(partition, self.partition_count)
        self._raise_if_closed()
        start = self._starts[partition]
        drop = max(0, min(before_offset, start + len(self._partitions[partition])) - start)
        del self._partitions[partition][:drop]
        self._starts[partition] = start + drop

    async def close(self) -> None:
        """Wake every reader with LogClosedError; later calls fail with it too. Closing twice is harmless."""
        self._closed = True
        for partition in range(self.partition_count):
            self._wake_tailers(partition)

    def _wake_tailers(self, partition: int) -> None:
        event = self._appended[partition]
        self._appended[partition] = asyncio.Event()
        event.set()

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise LogClosedError("memory log is closed")
