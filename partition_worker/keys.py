"""The RocksDB key layout of partition state: one table prefix per kind of row, never reused.

This module is the one registry of stored key prefixes. Every key starts with
the table byte; the store adds the 2-byte partition id in front
(`store.RocksPartitionStore`).
Variable-length parts are length-prefixed so that no key is a prefix of a
different row's key, and integers are big-endian so that keys sort by value.
"""

from __future__ import annotations

import enum
import struct

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class Table(enum.IntEnum):
    """Table prefixes. A value once assigned is never changed or reused."""

    META = 0x01
    INVOCATION = 0x02
    JOURNAL = 0x03
    STATE = 0x04
    INBOX = 0x05
    LOCK = 0x06
    PROMISE = 0x07
    TIMER = 0x08
    OUTBOX = 0x09
    DEDUP = 0x0A
    NOTIFIED = 0x0B
    RUNNING = 0x0C  # since 0.2: index of invocations whose phase is INVOKED (key only)
    DEADLOCK = 0x0D  # since 0.2: a call that closed a wait-for cycle, by its invocation id (see state_machine/deadlocks.py)
    COUNT = 0x0E  # since 0.2: how many rows some tables hold, kept by apply (u64 values; see state_machine/counts.py)
    INBOX_HEAD = 0x0F  # since 0.2: per object key, the seq of the last inbox row started (a seek hint, see `inbox_head_key`)


def _part(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _U16.pack(len(raw)) + raw


def meta_key(name: str) -> bytes:
    return bytes([Table.META]) + name.encode()


APPLIED_OFFSET = meta_key("applied_offset")
LEADER_EPOCH = meta_key("leader_epoch")
OUTBOX_NEXT_SEQ = meta_key("outbox_next_seq")
INBOX_NEXT_SEQ = meta_key("inbox_next_seq")
RUNNING_INDEX_COMPLETE = meta_key("running_index_complete")  # since 0.2: set once RUNNING holds every INVOKED invocation
COUNTS_COMPLETE = meta_key("counts_complete")  # since 0.2: set once the COUNT rows equal the tables they count


def invocation_key(invocation_id: str) -> bytes:
    return bytes([Table.INVOCATION]) + invocation_id.encode()


INVOCATION_PREFIX = bytes([Table.INVOCATION])


def invocation_id_of(key: bytes) -> str:
    """Inverse of `invocation_key`."""
    return key[1:].decode()


RUNNING_PREFIX = bytes([Table.RUNNING])


def running_key(invocation_id: str) -> bytes:
    return RUNNING_PREFIX + invocation_id.encode()


def running_id_of(key: bytes) -> str:
    """Inverse of `running_key`."""
    return key[1:].decode()


def journal_prefix(invocation_id: str) -> bytes:
    return bytes([Table.JOURNAL]) + _part(invocation_id)


def journal_key(invocation_id: str, index: int) -> bytes:
    return journal_prefix(invocation_id) + _U32.pack(index)


def state_prefix(service: str, key: str) -> bytes:
    return bytes([Table.STATE]) + _part(service) + _part(key)


def state_key(service: str, key: str, name: bytes) -> bytes:
    return state_prefix(service, key) + name


def state_name_of(full_key: bytes, prefix: bytes) -> bytes:
    return full_key[len(prefix) :]


INBOX_PREFIX = bytes([Table.INBOX])


def inbox_prefix(service: str, key: str) -> bytes:
    return INBOX_PREFIX + _part(service) + _part(key)


def inbox_key(service: str, key: str, seq: int) -> bytes:
    return inbox_prefix(service, key) + _U64.pack(seq)


def inbox_service_of(row: bytes) -> str:
    """The service of an inbox row (table byte, then the length-prefixed service name)."""
    (length,) = _U16.unpack_from(row, 1)
    return row[3 : 3 + length].decode()


def inbox_head_key(service: str, key: str) -> bytes:
    """The row holding the seq (8 bytes, big-endian) of the last row taken off this key's inbox: every inbox row of the key at or
    below it is gone, as rows are only added above every seq used before. Reading the inbox from just above it skips
    the deletes that a draining queue leaves in RocksDB until compaction (each of them costs a seek otherwise)."""
    return bytes([Table.INBOX_HEAD]) + _part(service) + _part(key)


def lock_key(service: str, key: str) -> bytes:
    return bytes([Table.LOCK]) + _part(service) + _part(key)


def promise_prefix(service: str, key: str) -> bytes:
    return bytes([Table.PROMISE]) + _part(service) + _part(key)


def promise_key(service: str, key: str, name: str) -> bytes:
    return promise_prefix(service, key) + name.encode()


TIMER_PREFIX = bytes([Table.TIMER])


def timer_key(fire_at_ms: int, invocation_id: str, timer_kind: int, ref: int) -> bytes:
    return TIMER_PREFIX + _U64.pack(fire_at_ms) + _part(invocation_id) + bytes([timer_kind]) + _U64.pack(ref)


def timer_key_floor(fire_at_ms: int) -> bytes:
    """A key that sorts before every timer firing at or after `fire_at_ms` and after every timer firing before it."""
    return TIMER_PREFIX + _U64.pack(fire_at_ms)


def parse_timer_key(key: bytes) -> tuple[int, str, int, int]:
    """Inverse of `timer_key`: (fire_at_ms, invocation_id, timer_kind, ref)."""
    fire_at_ms = _U64.unpack_from(key, 1)[0]
    (length,) = _U16.unpack_from(key, 9)
    invocation_id = key[11 : 11 + length].decode()
    rest = 11 + length
    return fire_at_ms, invocation_id, key[rest], _U64.unpack_from(key, rest + 1)[0]


OUTBOX_PREFIX = bytes([Table.OUTBOX])


def outbox_key(seq: int) -> bytes:
    return OUTBOX_PREFIX + _U64.pack(seq)


def outbox_seq_of(key: bytes) -> int:
    return _U64.unpack_from(key, 1)[0]


def dedup_key(producer: str) -> bytes:
    return bytes([Table.DEDUP]) + producer.encode()


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


def notified_key(invocation_id: str, signal: bool, ident: int | str) -> bytes:
    """Marks that the journal holds a notification for completion/signal `ident` of an invocation."""
    kind = b"s" if signal else b"c"
    tail = ident.encode() if isinstance(ident, str) else b"#" + _U32.pack(ident)
    return notified_prefix(invocation_id) + kind + tail


def notified_prefix(invocation_id: str) -> bytes:
    return bytes([Table.NOTIFIED]) + _part(invocation_id)


def parse_scoped_key(full_key: bytes) -> tuple[str, str, bytes]:
    """Inverse of the (service, key) tables' layout (state, inbox, lock, promise): (service, key, the rest of the key)."""
    (service_length,) = _U16.unpack_from(full_key, 1)
    service_end = 3 + service_length
    service = full_key[3:service_end].decode()
    (key_length,) = _U16.unpack_from(full_key, service_end)
    key_end = service_end + 2 + key_length
    return service, full_key[service_end + 2 : key_end].decode(), full_key[key_end:]


def table_prefix(table: Table) -> bytes:
    return bytes([table])


def deadlock_key(invocation_id: str) -> bytes:
    return bytes([Table.DEADLOCK]) + invocation_id.encode()


TIMER_COUNT = bytes([Table.COUNT]) + b"t"  # since 0.2: rows under TIMER_PREFIX
INBOX_COUNT_PREFIX = bytes([Table.COUNT]) + b"i"  # since 0.2: then the service name: that service's rows under INBOX_PREFIX
RUNNING_COUNT = bytes([Table.COUNT]) + b"r"  # since 0.2: rows under RUNNING_PREFIX; absent until an AnnounceLeader counted them


def inbox_count_key(service: str) -> bytes:
    return INBOX_COUNT_PREFIX + service.encode()


def inbox_count_service_of(key: bytes) -> str:
    """Inverse of `inbox_count_key`."""
    return key[len(INBOX_COUNT_PREFIX) :].decode()
