"""Unit tests of partition snapshots: taking them (when due, what the manifest says, pruning, trimming) and restoring them (newest whole one, torn skipped, foreign refused)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from partition_worker import keys, metrics
from partition_worker.actions import SendOutbox
from partition_worker.settings import SnapshotSettings
from partition_worker.snapshot_manifest import DATA_NAME, MANIFEST_NAME, SnapshotError, SnapshotRefusedError
from partition_worker.snapshot_repository import DirectorySnapshotRepository, offset_folder, open_repository, partition_folder
from partition_worker.snapshotter import LedPartition, SnapshotIdentity, Snapshotter, restore_newest
from partition_worker.state_machine import StateMachine, StateMachineConfig
from partition_worker.store import RocksDatabase, Transaction
from protocol import service_protocol_pb2 as pb
from protocol.frames import MessageType
from tests.unit.test_state_machine import COUNTER_ADD, GREETER
from wal.memory import MemoryLog
from wal.records import AnnounceLeader, AttemptEvents, AttemptFrame, Envelope, Invoke, Record

IDENTITY = SnapshotIdentity("embedded:test", 4, 1)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[RocksDatabase]:
    database = RocksDatabase(str(tmp_path / "state"))
    yield database
    database.close()


def apply_rows(database: RocksDatabase, partition: int, applied_offset: int, rows: dict[bytes, bytes]) -> None:
    """What a processor's batch leaves: some rows and the applied offset, in one write."""
    txn = Transaction(database.partition(partition))
    for key, value in rows.items():
        txn.put(key, value)
    txn.put(keys.APPLIED_OFFSET, keys.encode_u64(applied_offset))
    txn.put(keys.LEADER_EPOCH, keys.encode_u64(3))
    txn.commit()


class Leading:
    """The partitions a test pretends to lead, with their applied offsets."""

    def __init__(self) -> None:
        self.applied: dict[int, int] = {}

    def __call__(self) -> list[LedPartition]:
        return [LedPartition(p, offset) for p, offset in self.applied.items()]


def snapshotter(tmp_path: Path, database: RocksDatabase, log: MemoryLog, leading: Leading, **settings: object) -> Snapshotter:
    repository = DirectorySnapshotRepository(tmp_path / "snapshots")
    return Snapshotter(database, repository, log, IDENTITY, leading, tmp_path / "scratch", SnapshotSettings(**settings))  # type: ignore[arg-type]


async def one_snapshot(
    tmp_path: Path, database: RocksDatabase, partition: int, applied_offset: int, rows: dict[bytes, bytes]
) -> Snapshotter:
    """A snapshotter that took one snapshot of `partition` with these rows at `applied_offset`."""
    leading = Leading()
    taker = snapshotter(tmp_path, database, MemoryLog(4), leading, interval_records=1)
    apply_rows(database, partition, applied_offset, rows)
    leading.applied[partition] = applied_offset
    await taker.snapshot_due()
    return taker


async def fill_log(log: MemoryLog, partition: int, count: int) -> None:
    await log.append(partition, [b"record"] * count)


async def test_a_partition_is_snapshotted_after_interval_records_and_its_log_trimmed_below(tmp_path: Path, database: RocksDatabase) -> None:
    log, leading = MemoryLog(4), Leading()
    await fill_log(log, 1, 120)
    taker = snapshotter(tmp_path, database, log, leading, interval_records=100, interval_ms=3_600_000)
    apply_rows(database, 1, 49, {b"\x04state": b"a"})
    leading.applied[1] = 49
    assert await taker.snapshot_due() == [], "50 records applied: not due yet"
    apply_rows(database, 1, 109, {b"\x04state": b"b"})
    leading.applied[1] = 109
    (manifest,) = await taker.snapshot_due()
    assert (manifest.partition, manifest.applied_offset, manifest.leader_epoch, manifest.partition_count) == (1, 109, 3, 4)
    assert manifest.log_name == "embedded:test" and manifest.rows == 3
    stored = tmp_path / "snapshots" / partition_folder(1) / offset_folder(109)
    assert json.loads((stored / MANIFEST_NAME).read_bytes())["data_sha256"] == manifest.data_sha256
    assert (stored / DATA_NAME).stat().st_size == manifest.data_bytes
    assert await log.start_offset(1) == 110, "records up to the snapshot's applied offset are trimmed, the rest kept"
    assert await log.end_offset(1) == 120
    assert await log.start_offset(0) == 0, "other partitions are untouched"
    assert await taker.snapshot_due() == [], "nothing new applied"
    taker.observe_ages({1})
    assert metrics.snapshot_age.labels("1")._value.get() < 5, "the age gauge is set for a led partition with a snapshot"


async def test_a_partition_with_any_new_record_is_snapshotted_after_interval_ms(tmp_path: Path, database: RocksDatabase) -> None:
    log, leading = MemoryLog(4), Leading()
    taker = snapshotter(tmp_path, database, log, leading, interval_records=1_000_000, interval_ms=1)
    apply_rows(database, 2, 4, {b"\x04k": b"v"})
    leading.applied[2] = 4
    await taker.snapshot_due()  # first sight starts the clock
    await asyncio.sleep(0.01)
    (manifest,) = await taker.snapshot_due()
    assert manifest.applied_offset == 4


async def test_the_snapshot_holds_the_checkpoint_offset_not_a_later_one(tmp_path: Path, database: RocksDatabase) -> None:
    """The trim point comes from the rows exported, so a processor that applied more meanwhile loses nothing."""
    log, leading = MemoryLog(4), Leading()
    await fill_log(log, 0, 50)
    taker = snapshotter(tmp_path, database, log, leading, interval_records=1)
    apply_rows(database, 0, 19, {})
    leading.applied[0] = 40  # what the processor reports may be ahead of what the checkpoint holds
    (manifest,) = await taker.snapshot_due()
    assert manifest.applied_offset == 19
    assert await log.start_offset(0) == 20


async def test_old_snapshots_are_pruned_and_the_log_kept_from_the_oldest_kept(tmp_path: Path, database: RocksDatabase) -> None:
    log, leading = MemoryLog(4), Leading()
    await fill_log(log, 0, 100)
    taker = snapshotter(tmp_path, database, log, leading, interval_records=1, max_retained=2)
    for offset in (9, 19, 29):
        apply_rows(database, 0, offset, {b"\x04k": str(offset).encode()})
        leading.applied[0] = offset
        await taker.snapshot_due()
    assert await taker.repository.offsets(0) == [19, 29]
    assert await log.start_offset(0) == 20, "trimmed below the oldest snapshot kept, not the newest"


async def test_restore_replaces_the_partition_with_the_newest_snapshot(tmp_path: Path, database: RocksDatabase) -> None:
    apply_rows(database, 2, 5, {b"\x04other": b"x"})
    taker = await one_snapshot(tmp_path, database, 3, 7, {b"\x04a": b"1", b"\x04b": b"2"})
    fresh = RocksDatabase(str(tmp_path / "fresh"))
    try:
        apply_rows(fresh, 3, 2, {b"\x04stale": b"s"})
        manifest = await restore_newest(fresh, taker.repository, IDENTITY, 3, 2, tmp_path / "scratch")
        assert manifest is not None and manifest.applied_offset == 7
        rows = dict(fresh.partition(3).scan(b""))
        assert rows == dict(database.partition(3).scan(b"")), "exactly the snapshot's rows: the stale row is gone"
        assert list(fresh.partition(2).scan(b"")) == [], "only the restored partition changes"
        assert await restore_newest(fresh, taker.repository, IDENTITY, 3, 7, tmp_path / "scratch") is None, "not newer: kept"
    finally:
        fresh.close()


async def test_a_torn_newest_snapshot_is_skipped_for_the_older_whole_one(tmp_path: Path, database: RocksDatabase) -> None:
    log, leading = MemoryLog(4), Leading()
    taker = snapshotter(tmp_path, database, log, leading, interval_records=1, max_retained=2)
    for offset in (10, 20):
        apply_rows(database, 0, offset, {b"\x04k": str(offset).encode()})
        leading.applied[0] = offset
        await taker.snapshot_due()
    newest = tmp_path / "snapshots" / partition_folder(0) / offset_folder(20) / DATA_NAME
    newest.write_bytes(newest.read_bytes()[:-10])  # cut short after the manifest was written
    fresh = RocksDatabase(str(tmp_path / "fresh"))
    try:
        manifest = await restore_newest(fresh, taker.repository, IDENTITY, 0, -1, tmp_path / "scratch")
        assert manifest is not None and manifest.applied_offset == 10
        assert fresh.partition(0).get(b"\x04k") == b"10"
    finally:
        fresh.close()


async def test_a_snapshot_without_manifest_is_not_listed_and_is_discarded(tmp_path: Path) -> None:
    repository = DirectorySnapshotRepository(tmp_path)
    half = tmp_path / partition_folder(0) / offset_folder(5)
    half.mkdir(parents=True)
    (half / DATA_NAME).write_bytes(b"partial")
    (tmp_path / partition_folder(0) / ".tmp-00000000000000000009-ab").mkdir()
    assert await repository.offsets(0) == []
    assert await repository.discard_torn(0) == 2
    assert list((tmp_path / partition_folder(0)).iterdir()) == []


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (SnapshotIdentity("embedded:test", 8, 1), "with 4 partitions, this node runs 8"),
        (SnapshotIdentity("kafka:other", 4, 1), "this node's log is 'kafka:other'"),
    ],
)
async def test_a_snapshot_of_another_partition_count_or_log_is_refused_and_nothing_changes(
    tmp_path: Path, database: RocksDatabase, identity: SnapshotIdentity, message: str
) -> None:
    taker = await one_snapshot(tmp_path, database, 1, 3, {b"\x04k": b"v"})
    fresh = RocksDatabase(str(tmp_path / "fresh"))
    try:
        apply_rows(fresh, 1, 0, {b"\x04mine": b"m"})
        with pytest.raises(SnapshotRefusedError, match=message):
            await restore_newest(fresh, taker.repository, identity, 1, 0, tmp_path / "scratch")
        assert fresh.partition(1).get(b"\x04mine") == b"m", "never half-loaded: the store is as it was"
    finally:
        fresh.close()


async def test_a_snapshot_of_another_format_version_is_refused(tmp_path: Path, database: RocksDatabase) -> None:
    taker = await one_snapshot(tmp_path, database, 1, 3, {})
    manifest_path = tmp_path / "snapshots" / partition_folder(1) / offset_folder(3) / MANIFEST_NAME
    fields = json.loads(manifest_path.read_bytes())
    manifest_path.write_text(json.dumps({**fields, "format_version": 99}))
    with pytest.raises(SnapshotRefusedError, match="version 99; this duro reads"):
        await restore_newest(database, taker.repository, IDENTITY, 1, -1, tmp_path / "scratch")


def test_repository_locations(tmp_path: Path) -> None:
    assert isinstance(open_repository(SnapshotSettings(), tmp_path), DirectorySnapshotRepository)
    chosen = open_repository(SnapshotSettings(repository=f"file://{tmp_path}/x"), tmp_path)
    assert isinstance(chosen, DirectorySnapshotRepository) and chosen.root == tmp_path / "x"
    s3 = open_repository(SnapshotSettings(repository="s3://bucket/some/prefix", s3_endpoint_url="http://127.0.0.1:1"), tmp_path)
    assert s3.description == "s3://bucket/some/prefix/"
    with pytest.raises(SnapshotError, match="expected a directory"):
        open_repository(SnapshotSettings(repository="ftp://x"), tmp_path)


async def test_an_outbox_message_not_yet_delivered_survives_trimming_in_the_snapshot(tmp_path: Path, database: RocksDatabase) -> None:
    """The trimming rule's outbox edge: the record that queued a message may go, the message itself is in the snapshot's rows.

    A handler's one-way call is queued in the outbox and not yet delivered when
    the snapshot is taken and the log trimmed below it; a node that restores
    the snapshot and leads re-sends it.
    """
    machine = StateMachine(StateMachineConfig(partition=0))
    records = [
        AnnounceLeader(1, 1),
        Invoke("inv_1caller", GREETER, b""),
        AttemptEvents(
            "inv_1caller",
            1,
            (
                AttemptFrame(
                    int(MessageType.ONE_WAY_CALL_COMMAND),
                    0,
                    pb.OneWayCallCommandMessage(
                        service_name="Counter", handler_name="add", key="k", invocation_id_notification_idx=1
                    ).SerializeToString(),
                    COUNTER_ADD,
                ),
            ),
        ),
    ]
    log = MemoryLog(4)
    await log.append(0, [b"r"] * len(records))
    txn = Transaction(database.partition(0))
    for record in records:
        machine.apply(txn, Record(Envelope(1, 1), record))
    txn.put(keys.APPLIED_OFFSET, keys.encode_u64(len(records) - 1))
    txn.commit()
    assert list(database.partition(0).scan(keys.OUTBOX_PREFIX)), "the one-way call waits in the outbox"
    leading = Leading()
    leading.applied[0] = len(records) - 1
    taker = snapshotter(tmp_path, database, log, leading, interval_records=1)
    await taker.snapshot_due()
    assert await log.start_offset(0) == len(records), "every record that queued it is trimmed"
    fresh = RocksDatabase(str(tmp_path / "fresh"))
    try:
        await restore_newest(fresh, taker.repository, IDENTITY, 0, -1, tmp_path / "scratch")
        txn = Transaction(fresh.partition(0))
        actions = machine.apply(txn, Record(Envelope(2), AnnounceLeader(2, 2)))
        sent = [a.body for a in actions if isinstance(a, SendOutbox)]
        assert [(type(body).__name__, body.target.service) for body in sent] == [("Invoke", "Counter")], "the new leader re-sends it"
    finally:
        fresh.close()
