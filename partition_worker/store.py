"""Partition state storage: a key-value interface, its RocksDB and in-memory backends, and write transactions.

Apply reads through a `Transaction`, which sees its own pending writes and
turns them into one atomic write (a RocksDB write batch) on commit. Keys given
to a `PartitionStore` are partition-local; the store prefixes the partition id
so that all partitions of a node share one RocksDB.
"""

from __future__ import annotations

import bisect
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from rocksdict import (
    AccessType,
    Checkpoint,
    IngestExternalFileOptions,
    Options,
    Rdict,
    ReadOptions,
    SstFileWriter,
    WriteBatch,
    WriteOptions,
)

from partition_worker import keys

_PARTITION = struct.Struct(">H")
DEFAULT_MAX_OPEN_FILES = 128  # table files RocksDB keeps open; the node reserves descriptors for them
COMPACT_ON_DELETES_WINDOW_ROWS = 10_000
COMPACT_ON_DELETES_MIN_DELETES = 5_000
"""RocksDB compacts (in the background) a table file in which some `COMPACT_ON_DELETES_WINDOW_ROWS`
consecutive rows hold at least `COMPACT_ON_DELETES_MIN_DELETES` deletions. Such a run is an index or a
queue that apply emptied (the running index, an outbox, an inbox, timers); until a compaction drops
the deletions, a scan of that range steps over every one of them."""
T = TypeVar("T")


class PartitionStore(Protocol):
    """Committed state of one partition."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Rows whose key starts with `prefix`, in key order; with `start`, only those at or above it."""
        ...

    def write(self, puts: dict[bytes, bytes | None]) -> None:
        """Apply all puts (None deletes) atomically."""
        ...


class MemoryPartitionStore:
    """A dict-backed store for unit tests of the state machine."""

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.rows.get(key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.rows if k.startswith(prefix) and (start is None or k >= start)):
            yield key, self.rows[key]

    def write(self, puts: dict[bytes, bytes | None]) -> None:
        for key, value in puts.items():
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value


class RocksDatabase:
    """One RocksDB for all partitions of a node (rocksdict). Writes skip fsync: the log is the truth."""

    def __init__(self, path: str, max_open_files: int = DEFAULT_MAX_OPEN_FILES) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(max_open_files)
        options.add_compact_on_deletion_collector_factory(COMPACT_ON_DELETES_WINDOW_ROWS, COMPACT_ON_DELETES_MIN_DELETES, 0.0)
        self._db = Rdict(path, options)
        self._write_options = WriteOptions()
        self._write_options.sync = False

    def partition(self, partition: int) -> RocksPartitionStore:
        return RocksPartitionStore(self, partition)

    def create_checkpoint(self, path: str) -> None:
        """A consistent copy of the whole database at `path` (hard links where it can; blocking: run it in a thread).

        Each partition's rows in it are those of one applied batch boundary,
        since a batch and its applied offset are one write.
        """
        Checkpoint(self._db).create_checkpoint(path)

    def replace_partition(self, partition: int, sst_path: str) -> None:
        """Make the rows of `sst_path` (written by `export_partition`) the whole of `partition` (blocking).

        The partition's rows are deleted, then the file is ingested, which is
        atomic. A crash between the two leaves the partition empty (applied
        offset -1), never half of one and half of the other.
        """
        prefix = _PARTITION.pack(partition)
        self._db.delete_range(prefix, _next_prefix(prefix))
        options = IngestExternalFileOptions()
        options.set_move_files(False)
        self._db.ingest_external_file([sst_path], options)

    def settle(self, timeout_s: float) -> bool:
        """Flush the memtable and wait until RocksDB runs and owes no compaction, at most `timeout_s` (blocking; benchmarks use it)."""
        self._db.flush()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._db.property_int_value("rocksdb.compaction-pending") and not self._db.property_int_value(
                "rocksdb.num-running-compactions"
            ):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True, slots=True)
class PartitionExport:
    """What `export_partition` wrote: how many rows, and the partition's applied offset and leader epoch among them."""

    rows: int
    applied_offset: int
    leader_epoch: int


def export_partition(checkpoint_path: str, partition: int, sst_path: str) -> PartitionExport:
    """Write the rows of `partition` in the checkpoint at `checkpoint_path` to a new SST file (blocking).

    Writes no file when the partition has no rows (rows 0, applied offset -1).
    """
    options = Options(raw_mode=True)
    database = Rdict(checkpoint_path, options, access_type=AccessType.read_only())
    try:
        prefix = _PARTITION.pack(partition)
        read_options = ReadOptions()
        read_options.set_iterate_upper_bound(_next_prefix(prefix))
        iterator = database.iter(read_options)
        iterator.seek(prefix)
        writer: SstFileWriter | None = None
        rows = 0
        applied_offset, leader_epoch = -1, 0
        applied_key, epoch_key = prefix + keys.APPLIED_OFFSET, prefix + keys.LEADER_EPOCH
        while iterator.valid():
            if writer is None:
                writer = SstFileWriter(options=Options(raw_mode=True))
                writer.open(sst_path)
            key, value = iterator.key(), iterator.value()
            writer[key] = value
            if key == applied_key:
                applied_offset = keys.decode_u64(value)
            elif key == epoch_key:
                leader_epoch = keys.decode_u64(value)
            rows += 1
            iterator.next()
        del iterator
        if writer is not None:
            writer.finish()
        return PartitionExport(rows, applied_offset, leader_epoch)
    finally:
        database.close()


class RocksPartitionStore:
    """One partition's rows inside the shared RocksDB, under a 2-byte partition prefix."""

    def __init__(self, database: RocksDatabase, partition: int) -> None:
        self._db = database._db
        self._write_options = database._write_options
        self._prefix = _PARTITION.pack(partition)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(self._prefix + key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        full = self._prefix + prefix
        read_options = ReadOptions()
        read_options.set_iterate_upper_bound(_next_prefix(full))
        iterator = self._db.iter(read_options)
        iterator.seek(full if start is None or start < prefix else self._prefix + start)
        strip = len(self._prefix)
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(full):
                break
            yield key[strip:], iterator.value()
            iterator.next()

    def write(self, puts: dict[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            if value is None:
                batch.delete(self._prefix + key)
            else:
                batch.put(self._prefix + key, value)
        self._db.write(batch, self._write_options)


def _next_prefix(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    assert stripped, "a prefix of only 0xff bytes has no upper bound"
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Encodable(Protocol):
    def encode(self) -> bytes: ...


class Transaction:
    """Reads that see pending writes, and the pending writes themselves.

    Apply uses one transaction per group of records; `puts` becomes one atomic
    write. Scans merge committed rows with pending ones. Rows written as
    objects (`put_object`) stay decoded until commit, so a row changed by many
    records of a batch is decoded once and encoded once.
    """

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        self.puts: dict[bytes, bytes | None] = {}
        self._objects: dict[bytes, Encodable] = {}
        self._sorted_keys: list[bytes] | None = None  # the keys of `puts` in order, kept once `first` needs them

    def _track(self, key: bytes) -> None:
        """Keep `_sorted_keys` in step with a key about to enter `puts` (only once `first` has built it)."""
        if self._sorted_keys is not None and key not in self.puts:
            bisect.insort(self._sorted_keys, key)

    def get(self, key: bytes) -> bytes | None:
        obj = self._objects.get(key)
        if obj is not None:
            return obj.encode()
        if key in self.puts:
            return self.puts[key]
        return self.store.get(key)

    def get_object(self, key: bytes, decode: Callable[[bytes], T]) -> T | None:
        """The row at `key`, decoded once per transaction and then shared."""
        obj = self._objects.get(key)
        if obj is not None:
            return obj  # type: ignore[return-value]  # the cache holds each key's decoded row; `decode` of that key made it a T
        raw = self.puts[key] if key in self.puts else self.store.get(key)
        if raw is None:
            return None
        decoded = decode(raw)
        self._objects[key] = decoded  # type: ignore[assignment]  # every T decoded here is a stored row type with encode()
        if key not in self.puts:
            self._track(key)
            self.puts[key] = raw
        return decoded

    def cached_object(self, key: bytes) -> object | None:
        """The decoded row this transaction holds for `key` (read or written as an object), without touching the store."""
        return self._objects.get(key)

    def put_object(self, key: bytes, obj: Encodable) -> None:
        self._track(key)
        self._objects[key] = obj
        self.puts[key] = b""  # placeholder: encoded at commit

    def put(self, key: bytes, value: bytes) -> None:
        self._track(key)
        self._objects.pop(key, None)
        self.puts[key] = value

    def delete(self, key: bytes) -> None:
        self._track(key)
        self._objects.pop(key, None)
        self.puts[key] = None

    def insert(self, key: bytes, value: bytes) -> bool:
        """Put `key`; whether no row was there before (seeing pending writes), so that a caller counting rows counts only new ones."""
        added = self.get(key) is None
        self.put(key, value)
        return added

    def remove(self, key: bytes) -> bool:
        """Delete `key` if a row is there (seeing pending writes); whether one was, so that a caller counting rows counts only real removals."""
        if self.get(key) is None:
            return False
        self.delete(key)
        return True

    def _pending(self, key: bytes) -> bytes | None:
        obj = self._objects.get(key)
        return obj.encode() if obj is not None else self.puts[key]

    def scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        rows = {key: value for key, value in self.store.scan(prefix)}
        for key in self.puts:
            if not key.startswith(prefix):
                continue
            value = self._pending(key)
            if value is None:
                rows.pop(key, None)
            else:
                rows[key] = value
        return sorted(rows.items())

    def first(self, prefix: bytes, start: bytes | None = None) -> tuple[bytes, bytes] | None:
        """The lowest row under `prefix` (at or above `start`, if given), seeing pending writes, without reading the rest.

        A seek in the store plus a bisect in this transaction's pending keys:
        O(log n) in the rows under `prefix`, plus the rows this transaction
        deleted at the front of it, never a scan. But RocksDB's seek steps
        over every deleted row between where it lands and the first live one
        until compaction drops them: a queue drained from the front makes each
        `first(prefix)` cost in proportion to what was drained (2.5 ms a call
        after 10,000 pops here). A caller that knows every row below some key
        is gone passes that key as `start`.
        """
        lower = prefix if start is None or start < prefix else start
        committed: tuple[bytes, bytes] | None = None
        for stored_key, stored_value in self.store.scan(prefix, lower):
            if stored_key not in self.puts:
                committed = (stored_key, stored_value)
                break
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self.puts)
        position = bisect.bisect_left(self._sorted_keys, lower)
        while position < len(self._sorted_keys) and self._sorted_keys[position].startswith(prefix):
            key = self._sorted_keys[position]
            if committed is not None and key > committed[0]:
                break
            value = self._pending(key)
            if value is not None:
                return key, value
            position += 1
        return committed

    def delete_prefix(self, prefix: bytes) -> None:
        for key, _ in self.scan(prefix):
            self.delete(key)

    def commit(self) -> None:
        for key, obj in self._objects.items():
            self.puts[key] = obj.encode()
        if self.puts:
            self.store.write(self.puts)
        self.puts = {}
        self._objects = {}
        self._sorted_keys = None
