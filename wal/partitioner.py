"""The partitioner: maps 64-bit partition keys to partitions.

Partitions own contiguous ranges of the partition-key space: partition `p` of
`n` holds every partition key `k` with `(k * n) >> 64 == p`. How a key becomes
a partition key (a stable hash, embedded in every invocation id) is
`protocol.routing.partition_key_for_key`.
"""

from __future__ import annotations

PARTITION_KEY_BITS = 64
PARTITION_KEY_LIMIT = 1 << PARTITION_KEY_BITS  # partition keys are 0 .. PARTITION_KEY_LIMIT - 1


def partition_of(partition_key: int, partition_count: int) -> int:
    """The partition (0 .. partition_count - 1) whose key range holds `partition_key`."""
    _check_partition_key(partition_key)
    _check_partition_count(partition_count)
    return (partition_key * partition_count) >> PARTITION_KEY_BITS


def partition_key_range(partition: int, partition_count: int) -> tuple[int, int]:
    """The first and last partition key (both inclusive) that `partition` owns."""
    _check_partition_count(partition_count)
    if not 0 <= partition < partition_count:
        raise ValueError(f"partition must be in 0..{partition_count - 1}, got {partition}")
    return _first_key_of(partition, partition_count), _first_key_of(partition + 1, partition_count) - 1


def _first_key_of(partition: int, partition_count: int) -> int:
    """The smallest k with (k * partition_count) >> 64 >= partition, i.e. ceil(partition * 2^64 / count)."""
    return -(-(partition << PARTITION_KEY_BITS) // partition_count)


def _check_partition_key(partition_key: int) -> None:
    if not 0 <= partition_key < PARTITION_KEY_LIMIT:
        raise ValueError(f"partition_key must be in 0..2^64-1, got {partition_key}")


def _check_partition_count(partition_count: int) -> None:
    if partition_count < 1:
        raise ValueError(f"partition_count must be at least 1, got {partition_count}")
