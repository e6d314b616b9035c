"""The node's log as one of its worker processes sees it: its own partitions in its own embedded log, the others' through their owners.

A node with several workers gives worker `i` the partitions `p` with
`p % workers == i`, each worker with log files and a state store of its own.
Any worker's ingress, admin API, outbox or subscription consumer may append to
any partition: an append to a partition another worker owns goes to that
worker over its link (`duro.worker_link`) and into that worker's log, so the
request body crosses once, already encoded as a record (counted in
`duro_worker_link_appends_total`). A fresh unkeyed invocation is made on one of
the ingress's own partitions (`ingress.local_partitions`), so only keyed,
derived and routed-by-id records cross. Tails, offsets and
trimming are asked only of a worker's own partitions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from duro import metrics
from duro.worker_link import LinkClient
from wal.log import Log
from wal.log_arguments import check_partition, entries_as_bytes


def owner_of(partition: int, workers: int) -> int:
    """The worker that owns `partition` among `workers`."""
    return partition % workers


def partitions_of(worker: int, workers: int, partition_count: int) -> set[int]:
    """The partitions worker `worker` of `workers` owns, of `partition_count`."""
    return {p for p in range(partition_count) if owner_of(p, workers) == worker}


class WorkerLog:
    """A `Log` for worker `worker` of `workers`: `local` holds its partitions, `links` reach the owners of the others."""

    def __init__(self, local: Log, worker: int, workers: int, links: dict[int, LinkClient]) -> None:
        assert 0 <= worker < workers, f"worker {worker} of {workers}"
        self._local = local
        self._worker = worker
        self._workers = workers
        self._links = links
        self._crossings = {owner: metrics.link_appends.labels(str(owner)) for owner in links}  # bound once: appends are hot

    @property
    def partition_count(self) -> int:
        return self._local.partition_count

    @property
    def max_append_bytes(self) -> int:
        return self._local.max_append_bytes

    def owns(self, partition: int) -> bool:
        return owner_of(partition, self._workers) == self._worker

    def owned_partitions(self) -> set[int]:
        return partitions_of(self._worker, self._workers, self.partition_count)

    async def append(self, partition: int, entries: Sequence[bytes]) -> int:
        check_partition(partition, self.partition_count)
        owner = owner_of(partition, self._workers)
        if owner == self._worker:
            return await self._local.append(partition, entries)
        self._crossings[owner].inc()
        return await self._links[owner].append(partition, entries_as_bytes(entries))

    def tail(self, partition: int, from_offset: int, max_batch_entries: int = 512) -> AsyncGenerator[list[tuple[int, bytes]], None]:
        self._check_own(partition)
        return self._local.tail(partition, from_offset, max_batch_entries)

    async def end_offset(self, partition: int) -> int:
        self._check_own(partition)
        return await self._local.end_offset(partition)

    async def start_offset(self, partition: int) -> int:
        self._check_own(partition)
        return await self._local.start_offset(partition)

    async def trim(self, partition: int, before_offset: int) -> None:
        self._check_own(partition)
        await self._local.trim(partition, before_offset)

    async def close(self) -> None:
        await self._local.close()

    def _check_own(self, partition: int) -> None:
        assert self.owns(partition), f"worker {self._worker} of {self._workers} reads only its own partitions, not {partition}"
