"""Where a fresh unkeyed invocation made here lives: on a partition this process owns now, so that it never crosses to another.

An invocation of a plain service without an idempotency key (a call, a send, a
delayed send) has no key that decides its partition: any partition will do,
and Restate picks one at random. In a node of several worker processes the
kernel hands a client's connection to any worker (`SO_REUSEPORT`), so a random
partition belongs to another worker about (workers - 1) / workers of the time,
and then the record and its reply cross a local socket (`duro/worker_log.py`):
more writes, reads and wake-ups for those requests. Choosing the
partition among the ones this worker (or on Kafka, this node) owns keeps them
local, uniformly spread over those partitions.

Only the random partition key of a fresh id is placed here. Ids derived from
their inputs (idempotency keys, workflow runs, calls from a journal, Kafka
events) stay as they are: they must come out the same wherever they are
computed. Ownership may move after the choice (a Kafka rebalance): the
invocation is then appended to a partition another node leads, which is
correct, only no longer local. With no partition owned (a Kafka node not yet
assigned any) or all of them (one worker), the key is the random one as drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

from wal.partitioner import PARTITION_KEY_BITS, PARTITION_KEY_LIMIT, partition_key_range


class LocalPartitionKeys:
    """Maps a uniformly random 64-bit partition key to one inside the partitions owned now (`own`), each equally likely."""

    def __init__(self, partition_count: int) -> None:
        self.partition_count = partition_count
        self.owned: tuple[int, ...] = ()
        """The partitions keys are placed in, ascending; empty when any partition will do."""
        self._ranges: tuple[tuple[int, int], ...] = ()  # (first key, number of keys) of each partition in `owned`

    def own(self, partitions: Iterable[int]) -> None:
        """The partitions this process owns from now on (none, or all of them: keys stay as drawn)."""
        owned = sorted(set(partitions))
        if len(owned) == self.partition_count:
            owned = []
        ranges = []
        for partition in owned:
            first, last = partition_key_range(partition, self.partition_count)
            ranges.append((first, last - first + 1))
        self.owned, self._ranges = tuple(owned), tuple(ranges)

    def place(self, random_key: int) -> int:
        """A partition key in an owned partition, from `random_key` uniform over 0..2^64-1 (returned as is when any will do).

        The high part of `random_key * len(owned)` picks the partition, each
        equally likely; the low part, again uniform, places the key in its range.
        """
        ranges = self._ranges
        if not ranges:
            return random_key
        scaled = random_key * len(ranges)
        first, size = ranges[scaled >> PARTITION_KEY_BITS]
        return first + (((scaled & (PARTITION_KEY_LIMIT - 1)) * size) >> PARTITION_KEY_BITS)
