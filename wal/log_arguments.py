"""Validation of the arguments of `Log` calls, shared by every backend so that all reject bad input alike."""

from __future__ import annotations

from collections.abc import Sequence

MAX_PARTITION_COUNT = 1 << 16  # the embedded log stores the partition as a u16


def check_partition_count(partition_count: int) -> None:
    if not isinstance(partition_count, int) or not 1 <= partition_count <= MAX_PARTITION_COUNT:
        raise ValueError(f"partition_count must be an int in 1..{MAX_PARTITION_COUNT}, got {partition_count!r}")


def check_partition(partition: int, partition_count: int) -> None:
    if not isinstance(partition, int) or not 0 <= partition < partition_count:
        raise ValueError(f"partition must be an int in 0..{partition_count - 1}, got {partition!r}")


def check_tail_arguments(partition: int, from_offset: int, max_batch_entries: int, partition_count: int) -> None:
    check_partition(partition, partition_count)
    if not isinstance(from_offset, int) or from_offset < 0:
        raise ValueError(f"from_offset must be an int >= 0, got {from_offset!r}")
    if not isinstance(max_batch_entries, int) or max_batch_entries < 1:
        raise ValueError(f"max_batch_entries must be an int >= 1, got {max_batch_entries!r}")


def entries_as_bytes(entries: Sequence[bytes]) -> list[bytes]:
    """The entries of one append as immutable bytes; raises if there are none or one is not bytes-like.

    bytes are kept as they are; bytearray and memoryview are copied, so that the
    caller may reuse its buffer as soon as `append` was called.
    """
    if isinstance(entries, (bytes, bytearray, memoryview, str)):
        raise TypeError("entries must be a sequence of bytes objects, not a single bytes or str value")
    payloads = [_entry_as_bytes(index, entry) for index, entry in enumerate(entries)]
    if not payloads:
        raise ValueError("entries must hold at least one entry; an append of nothing has no last offset")
    return payloads


def _entry_as_bytes(index: int, entry: object) -> bytes:
    if isinstance(entry, bytes):
        return entry
    if isinstance(entry, (bytearray, memoryview)):
        return bytes(entry)
    raise TypeError(f"entries[{index}] must be bytes, got {type(entry).__name__}")
