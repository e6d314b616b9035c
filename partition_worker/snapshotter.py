"""Partition snapshots: the leader takes them every N records or T seconds, trims the log below them, and a starting processor restores them.

Taking: every `check_interval_ms` the snapshotter looks at the partitions this
node leads. One that applied `interval_records` records since its last
snapshot, or any record `interval_ms` after it, is due. For the due ones it
takes one RocksDB checkpoint (consistent: a batch and its applied offset are
one write), exports each due partition's rows to an SST file, and stores it
with its manifest in the repository. Then it keeps the newest `max_retained`
snapshots of the partition and trims the log below the oldest kept one.

The trimming rule: a partition's log may lose the records at offsets up to
and including the applied offset of its oldest kept durable snapshot, and no
others. Everything a record did is in the snapshot's rows (state, journals,
timers, inbox, outbox messages not yet delivered, dedup sequences), so such a
record is never needed again; a record after it may not be applied anywhere
yet and stays. Only the partition's leader trims it, only after the snapshot is
durable in the repository, and never beyond what it has applied itself. On
Kafka a node that takes the partition over has no other copy to catch up from
than the snapshot plus the records after it, which is exactly what is kept.

Restoring (`restore_newest`): before a processor starts applying, if the
repository has a snapshot of the partition newer than the local store, the
newest whole one replaces the partition's rows, and applying resumes after its
offset. Torn snapshots are skipped with a warning; a snapshot of another
format, partition count or log is refused (SnapshotRefusedError), never loaded.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from partition_worker import metrics
from partition_worker.settings import SnapshotSettings
from partition_worker.snapshot_manifest import SnapshotManifest, TornSnapshotError, file_sha256
from partition_worker.snapshot_repository import SnapshotRepository
from partition_worker.store import RocksDatabase, export_partition
from wal.log import Log

log = logging.getLogger("duro.snapshots")


@dataclass(frozen=True, slots=True)
class LedPartition:
    """What the snapshotter needs of a partition this node leads."""

    partition: int
    applied_offset: int


@dataclass(slots=True)
class _PartitionProgress:
    last_offset: int  # applied offset of the newest snapshot (-1: none)
    last_at: float  # monotonic time it was taken (or first seen)
    last_wall_ms: int  # wall-clock time it was taken, for the age metric


@dataclass(frozen=True, slots=True)
class SnapshotIdentity:
    """Which log snapshots belong to: they are restored only into a node of the same log and partition count."""

    log_name: str
    partition_count: int
    node_id: int


class Snapshotter:
    """Takes snapshots of the partitions this node leads and trims the log below them; see the module docstring."""

    def __init__(
        self,
        database: RocksDatabase,
        repository: SnapshotRepository,
        log_: Log,
        identity: SnapshotIdentity,
        led_partitions: Callable[[], list[LedPartition]],
        scratch_dir: Path,
        settings: SnapshotSettings,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._database = database
        self.repository = repository
        self._log = log_
        self._identity = identity
        self._led_partitions = led_partitions
        self._scratch = scratch_dir
        self.settings = settings
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._progress: dict[int, _PartitionProgress] = {}
        self._round = 0
        self.snapshots_taken = 0

    async def run(self) -> None:
        """Check for due partitions every `check_interval_ms`, forever. Cancelling stops between two steps of a round."""
        shutil.rmtree(self._scratch, ignore_errors=True)
        while True:
            await asyncio.sleep(self.settings.check_interval_ms / 1000)
            await self.snapshot_due()
            self.observe_ages({led.partition for led in self._led_partitions()})

    async def snapshot_due(self, force: bool = False) -> list[SnapshotManifest]:
        """Snapshot every led partition that is due (all that applied anything since their last, with `force`)."""
        due = [led for led in self._led_partitions() if await self._is_due(led, force)]
        if not due:
            return []
        self._round += 1
        round_dir = self._scratch / f"round-{self._round}"
        checkpoint = round_dir / "checkpoint"
        round_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self._database.create_checkpoint, str(checkpoint))
            taken = []
            for led in due:
                manifest = await self._snapshot_one(led.partition, checkpoint, round_dir)
                if manifest is not None:
                    taken.append(manifest)
            return taken
        finally:
            await asyncio.to_thread(shutil.rmtree, round_dir, True)

    async def _is_due(self, led: LedPartition, force: bool) -> bool:
        progress = self._progress.get(led.partition)
        if progress is None:
            progress = await self._first_sight(led.partition)
        if led.applied_offset <= progress.last_offset:
            return False
        if force or led.applied_offset - progress.last_offset >= self.settings.interval_records:
            return True
        return time.monotonic() - progress.last_at >= self.settings.interval_ms / 1000

    async def _first_sight(self, partition: int) -> _PartitionProgress:
        """Start tracking a partition this node just began to lead: its newest snapshot in the repository, torn leftovers removed."""
        await self.repository.discard_torn(partition)
        offsets = await self.repository.offsets(partition)
        progress = _PartitionProgress(offsets[-1] if offsets else -1, time.monotonic(), self._clock_ms())
        self._progress[partition] = progress
        return progress

    async def _snapshot_one(self, partition: int, checkpoint: Path, round_dir: Path) -> SnapshotManifest | None:
        data_path = round_dir / f"partition-{partition}.sst"
        exported = await asyncio.to_thread(export_partition, str(checkpoint), partition, str(data_path))
        progress = self._progress[partition]
        if exported.rows == 0 or exported.applied_offset <= progress.last_offset:
            return None
        manifest = SnapshotManifest(
            partition=partition,
            partition_count=self._identity.partition_count,
            applied_offset=exported.applied_offset,
            leader_epoch=exported.leader_epoch,
            log_name=self._identity.log_name,
            data_bytes=data_path.stat().st_size,
            data_sha256=await asyncio.to_thread(file_sha256, data_path),
            rows=exported.rows,
            created_at_ms=self._clock_ms(),
            node_id=self._identity.node_id,
        )
        await self.repository.put(manifest, data_path)
        progress.last_offset, progress.last_at, progress.last_wall_ms = manifest.applied_offset, time.monotonic(), manifest.created_at_ms
        self.snapshots_taken += 1
        metrics.observe_snapshot(partition, 0.0)
        log.info(
            "partition %d: snapshot at offset %d (%d rows, %d bytes) in %s",
            partition, manifest.applied_offset, manifest.rows, manifest.data_bytes, self.repository.description,
        )  # fmt: skip
        oldest_kept = await self._prune(partition)
        if self.settings.trim_log:
            await self._log.trim(partition, oldest_kept + 1)
        return manifest

    async def _prune(self, partition: int) -> int:
        """Delete all but the newest `max_retained` snapshots of the partition; return the applied offset of the oldest kept."""
        offsets = await self.repository.offsets(partition)
        kept = offsets[-self.settings.max_retained :]
        for offset in offsets[: -self.settings.max_retained]:
            await self.repository.delete(partition, offset)
        return kept[0]

    def observe_ages(self, led: set[int]) -> None:
        """Set the snapshot-age gauge (`duro_partition_snapshot_age_seconds`) of the led partitions that have a snapshot.

        The age counts from when this node took the snapshot, or first saw it
        in the repository when it began to lead the partition.
        """
        now_ms = self._clock_ms()
        for partition, progress in self._progress.items():
            if partition in led and progress.last_offset >= 0:
                metrics.observe_snapshot(partition, max(0, now_ms - progress.last_wall_ms) / 1000)


async def restore_newest(
    database: RocksDatabase,
    repository: SnapshotRepository,
    identity: SnapshotIdentity,
    partition: int,
    local_applied_offset: int,
    scratch_dir: Path,
) -> SnapshotManifest | None:
    """Replace the partition's rows by its newest whole snapshot, if that is newer than `local_applied_offset`; return it (None: kept).

    Torn snapshots are skipped (warning) in favour of the next older one; a
    snapshot of another format, partition count or log raises
    SnapshotRefusedError before anything is changed.
    """
    offsets = [offset for offset in await repository.offsets(partition) if offset > local_applied_offset]
    for offset in reversed(offsets):
        scratch = scratch_dir / f"restore-{partition}-{offset}"
        try:
            try:
                manifest, data_path = await repository.fetch(partition, offset, scratch)
            except TornSnapshotError as error:
                log.warning("partition %d: skipping a torn snapshot: %s", partition, error)
                continue
            where = f"the snapshot of partition {partition} at offset {offset} in {repository.description}"
            manifest.check_restorable(partition, identity.partition_count, identity.log_name, where)
            await asyncio.to_thread(database.replace_partition, partition, str(data_path))
            log.info(
                "partition %d: restored the snapshot at offset %d (%d rows) from %s; applying resumes at %d",
                partition, offset, manifest.rows, repository.description, offset + 1,
            )  # fmt: skip
            return manifest
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
    return None
