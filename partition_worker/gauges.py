"""Samples the gauges that need reading state or asking the log: apply lag, timers pending, inbox lengths, RocksDB size.

Every `sample_interval_ms`, for each partition this node runs, it asks the log
for the partition's end offset and reads the row counts apply keeps
(`state_machine.counts`: two reads and one row per service with an inbox, never
a scan of timers or inboxes, so a sample costs the same whatever the store
holds, and the counts are exact). The RocksDB size is the size of the files in
its directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from partition_worker import metrics
from partition_worker.state_machine import counts
from partition_worker.store import PartitionStore
from wal.log import Log, LogError

log = logging.getLogger("duro.gauges")


@dataclass(frozen=True, slots=True)
class SampledPartition:
    """What the sampler reads of one partition this node runs."""

    partition: int
    applied_offset: int
    store: PartitionStore


@dataclass(frozen=True, slots=True)
class GaugeSettings:
    sample_interval_ms: int = 10_000


class GaugeSampler:
    def __init__(
        self, log_: Log, partitions: Callable[[], list[SampledPartition]], rocksdb_dir: Path, settings: GaugeSettings | None = None
    ) -> None:
        self._log = log_
        self._partitions = partitions
        self._rocksdb_dir = rocksdb_dir
        self.settings = settings or GaugeSettings()

    async def run(self) -> None:
        """Sample forever; cancelling stops it between two reads."""
        while True:
            await self.sample_once()
            await asyncio.sleep(self.settings.sample_interval_ms / 1000)

    async def sample_once(self) -> None:
        metrics.rocksdb_size.set(directory_size_bytes(self._rocksdb_dir))
        for part in self._partitions():
            label = str(part.partition)
            try:
                end_offset = await self._log.end_offset(part.partition)
            except LogError as error:
                log.info("apply lag of partition %d not sampled: %s", part.partition, error)
            else:
                metrics.apply_lag.labels(label).set(max(0, end_offset - 1 - part.applied_offset))
            stored = counts.read(part.store)
            if stored is None:
                continue  # counts still being built (a store written before apply kept them): no value rather than a wrong one
            metrics.timers_pending.labels(label).set(stored.timers)
            for service, length in stored.inbox_by_service.items():
                metrics.inbox_length.labels(label, service).set(length)
            for labels in _stale_inbox_series(label, stored.inbox_by_service):
                metrics.inbox_length.labels(*labels).set(0)


def directory_size_bytes(directory: Path) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass  # a file compaction removed meanwhile
    except OSError:
        return 0
    return total


def _stale_inbox_series(partition_label: str, current: Collection[str]) -> list[tuple[str, str]]:
    """Inbox series of this partition whose service has no waiting invocation any more (they drop to 0)."""
    stale = []
    for metric in metrics.inbox_length.collect():
        for sample in metric.samples:
            if sample.labels.get("partition") == partition_label and sample.labels.get("service") not in current:
                stale.append((partition_label, sample.labels["service"]))
    return stale
