"""Unit tests of `partition_worker.store`: transactions over the in-memory and the RocksDB store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from partition_worker.store import MemoryPartitionStore, PartitionStore, RocksDatabase, Transaction


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartitionStore]:
    if request.param == "memory":
        yield MemoryPartitionStore()
        return
    database = RocksDatabase(str(tmp_path / "db"))
    yield database.partition(3)
    database.close()


def _committed(store: PartitionStore, rows: dict[bytes, bytes]) -> None:
    txn = Transaction(store)
    for key, value in rows.items():
        txn.put(key, value)
    txn.commit()


def test_first_is_the_lowest_committed_row_of_the_prefix(store: PartitionStore) -> None:
    _committed(store, {b"a\x02": b"2", b"a\x01": b"1", b"b\x00": b"x", b"\x00": b"y"})
    assert Transaction(store).first(b"a") == (b"a\x01", b"1")
    assert Transaction(store).first(b"c") is None


def test_first_skips_rows_deleted_in_the_transaction_and_sees_new_ones(store: PartitionStore) -> None:
    _committed(store, {b"a\x01": b"1", b"a\x02": b"2", b"a\x05": b"5"})
    txn = Transaction(store)
    txn.delete(b"a\x01")
    assert txn.first(b"a") == (b"a\x02", b"2")
    txn.put(b"a\x00", b"0")  # a pending row below every committed one
    assert txn.first(b"a") == (b"a\x00", b"0")
    txn.delete(b"a\x00")
    txn.delete(b"a\x02")
    assert txn.first(b"a") == (b"a\x05", b"5")
    txn.put(b"a\x05", b"changed")
    assert txn.first(b"a") == (b"a\x05", b"changed")
    txn.delete(b"a\x05")
    assert txn.first(b"a") is None
    txn.put(b"a\x09", b"9")
    assert txn.first(b"a") == (b"a\x09", b"9")
    txn.commit()
    assert Transaction(store).first(b"a") == (b"a\x09", b"9")


def test_first_from_a_start_key_ignores_rows_below_it_committed_or_pending(store: PartitionStore) -> None:
    _committed(store, {b"a\x01": b"1", b"a\x03": b"3", b"a\x06": b"6", b"b\x00": b"x"})
    txn = Transaction(store)
    assert txn.first(b"a", b"a\x02") == (b"a\x03", b"3")
    assert txn.first(b"a", b"a\x03") == (b"a\x03", b"3"), "start is inclusive"
    assert txn.first(b"a", b"") == (b"a\x01", b"1"), "a start below the prefix reads the whole prefix"
    txn.put(b"a\x02", b"2")  # pending, below the start
    txn.put(b"a\x05", b"5")  # pending, above the start and below the next committed row
    assert txn.first(b"a", b"a\x04") == (b"a\x05", b"5")
    txn.delete(b"a\x05")
    txn.delete(b"a\x06")
    assert txn.first(b"a", b"a\x04") is None
    assert txn.first(b"a", b"a\x00") == (b"a\x01", b"1")
    assert list(store.scan(b"a", b"a\x02")) == [(b"a\x03", b"3"), (b"a\x06", b"6")]


def test_first_agrees_with_a_full_scan_through_a_sequence_of_changes(store: PartitionStore) -> None:
    _committed(store, {bytes([0x05, n]): bytes([n]) for n in range(0, 40, 3)})
    txn = Transaction(store)
    for step in range(60):
        key = bytes([0x05, (step * 7) % 45])
        if step % 3 == 0:
            txn.delete(key)
        else:
            txn.put(key, bytes([step]))
        rows = txn.scan(b"\x05")
        assert txn.first(b"\x05") == (rows[0] if rows else None), f"step {step}"


class _Row:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def encode(self) -> bytes:
        return self.raw


def test_rows_read_or_written_as_objects_are_seen_by_first(store: PartitionStore) -> None:
    _committed(store, {b"a\x01": b"1", b"a\x02": b"2"})
    txn = Transaction(store)
    assert txn.first(b"a") == (b"a\x01", b"1")
    row = txn.get_object(b"a\x01", _Row)
    assert row is not None and row.raw == b"1"
    assert txn.first(b"a") == (b"a\x01", b"1")
    txn.put_object(b"a\x00", _Row(b"0"))
    assert txn.first(b"a") == (b"a\x00", b"0")
