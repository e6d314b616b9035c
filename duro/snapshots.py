"""Snapshots in one node: the repository the settings name, restoring a partition before its processor applies, and the snapshotter's loop."""

from __future__ import annotations

import logging

from duro.layout import SNAPSHOT_EXPORT_FOLDER, SNAPSHOT_SCRATCH_FOLDER, SNAPSHOTS_FOLDER
from duro.settings import DuroSettings
from partition_worker.snapshot_manifest import SnapshotManifest
from partition_worker.snapshot_repository import open_repository
from partition_worker.snapshotter import LedPartition, SnapshotIdentity, Snapshotter, restore_newest
from partition_worker.store import RocksDatabase
from partition_worker.worker import PartitionWorker
from wal.log import Log

log = logging.getLogger("duro.snapshots")


class NodeSnapshots:
    """The node's snapshot repository, its restores and its snapshotter."""

    def __init__(self, settings: DuroSettings, database: RocksDatabase, wal: Log, identity: SnapshotIdentity) -> None:
        self._settings = settings.snapshots
        if settings.log == "kafka" and settings.snapshots.repository is None and settings.snapshots.trim_log:
            # A node-local repository is no use to the node that takes a partition over: keep the topic whole.
            log.warning(
                "snapshots go to this node's data dir, which other nodes cannot read: the Kafka topic is not trimmed; "
                "set DURO_SNAPSHOTS__REPOSITORY to storage every node reads (s3://... or a shared directory) to trim it"
            )
            self._settings = settings.snapshots.model_copy(update={"trim_log": False})
        self._database = database
        self._identity = identity
        self._scratch = settings.data_dir / SNAPSHOT_SCRATCH_FOLDER
        self.repository = open_repository(settings.snapshots, settings.data_dir / SNAPSHOTS_FOLDER)
        self._wal = wal
        self.snapshotter: Snapshotter | None = None
        self.restored: dict[int, SnapshotManifest] = {}

    async def restore(self, partition: int, applied_offset: int) -> None:
        """Before a processor applies: restore the partition's newest snapshot if it is newer than the local store."""
        manifest = await restore_newest(self._database, self.repository, self._identity, partition, applied_offset, self._scratch)
        if manifest is not None:
            self.restored[partition] = manifest

    async def run(self, worker: PartitionWorker) -> None:
        """Take snapshots of the partitions this node leads, for as long as the node runs."""

        def led() -> list[LedPartition]:
            return [LedPartition(p, processor.applied_offset) for p, processor in list(worker.processors.items()) if processor.leader_epoch]

        self.snapshotter = Snapshotter(
            self._database, self.repository, self._wal, self._identity, led, self._scratch / SNAPSHOT_EXPORT_FOLDER, self._settings
        )
        log.info("snapshots of this node's partitions go to %s", self.repository.description)
        await self.snapshotter.run()

    async def snapshot_now(self) -> list[SnapshotManifest]:
        """Snapshot every led partition that applied anything since its last snapshot (used by tests and benchmarks)."""
        assert self.snapshotter is not None, "the snapshotter runs"
        return await self.snapshotter.snapshot_due(force=True)
