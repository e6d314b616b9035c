"""The `Log` interface: durable, ordered, partitioned append and tailing reads.

Every backend (embedded, Kafka) implements it and passes the same conformance
suite (`tests/unit/test_log_conformance.py`). Offsets are per partition, start
at 0 and only grow. A reader only ever sees entries that are durable.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol


class LogError(Exception):
    """The log could not do what was asked; the message says what and whether a retry is safe."""


class LogClosedError(LogError):
    """The log was closed while an operation was pending."""


class LogFullError(LogError):
    """The log's disk is full: this append was not written (nothing of it is durable), and a retry once space is freed is safe."""


class AppendOutcomeUnknownError(LogError):
    """The append's outcome is unknown: it may or may not be durable (its answer from the worker process owning the partition was lost, or Kafka's acknowledgement did not come in time); a retry may write it twice."""


class AppendNotSentError(LogError):
    """Nothing of the append reached the log (the worker process owning the partition did not accept the connection): it was not written, a retry is safe."""


class AppendTooLargeError(LogError, ValueError):
    """An append larger than the log's `max_append_bytes`; nothing of it was written, and retrying it cannot help."""


ENTRY_ALLOWANCE_BYTES = 64
"""At most what any backend counts per entry on top of its payload against `max_append_bytes` (its frame or record header)."""


def append_runs(entries: Sequence[bytes], max_append_bytes: int) -> list[list[bytes]]:
    """`entries` split, in order, into runs that one append each takes on every backend.

    An entry too large for an append on its own is a run of its own (its
    append then raises AppendTooLargeError).
    """
    runs: list[list[bytes]] = []
    run_bytes = 0
    for entry in entries:
        size = len(entry) + ENTRY_ALLOWANCE_BYTES
        if not runs or run_bytes + size > max_append_bytes:
            runs.append([])
            run_bytes = 0
        runs[-1].append(entry)
        run_bytes += size
    return runs


class LogTrimmedError(LogError):
    """A read asked for entries the log no longer holds: they were trimmed below a durable snapshot."""


class Log(Protocol):
    """A partitioned write-ahead log."""

    @property
    def partition_count(self) -> int: ...

    @property
    def max_append_bytes(self) -> int:
        """The largest append accepted: payloads plus at most ENTRY_ALLOWANCE_BYTES per entry; larger ones raise AppendTooLargeError."""
        ...

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        """Append entries to one partition, in order; return the offset of the last one.

        Returns only once every entry is durable (fsync on the embedded log,
        acks=all on Kafka). Concurrent appends are group-committed.
        """
        ...

    def tail(self, partition: int, from_offset: int, max_batch_entries: int = 512) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        """Yield batches of (offset, entry) from `from_offset` on, forever, as they become durable.

        Cancelling the consuming task stops the iteration.
        """
        ...

    async def end_offset(self, partition: int) -> int:
        """The offset the next appended entry will get (0 for an empty partition)."""
        ...

    async def start_offset(self, partition: int) -> int:
        """The lowest offset still held (0 until the partition was trimmed); a tail from below it raises LogTrimmedError."""
        ...

    async def trim(self, partition: int, before_offset: int) -> None:
        """Entries of `partition` below `before_offset` are no longer needed; the log may delete them, now or later.

        The caller (the snapshotter) guarantees that a durable snapshot holds
        their effect and that nothing still reads them. A backend deletes what
        its storage allows (whole segments, Kafka's DeleteRecords).
        """
        ...

    async def close(self) -> None:
        """Flush, release files and connections; pending appends fail with LogClosedError."""
        ...
