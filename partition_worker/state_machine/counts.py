"""Row counts kept by apply: timers armed, inbox entries per service and running invocations, exact and read in O(1).

Apply moves a count exactly where it adds or removes a row of the counted
table, and only when it did (`Transaction.insert` and `Transaction.remove` say
whether a row was added or removed). A count is an object row of the
transaction, so a batch that moves it many times decodes and writes it once.
The counts are ordinary partition rows (`keys.Table.COUNT`): they replay,
survive restarts and travel in snapshots. A store written before they existed
(no `keys.COUNTS_COMPLETE`) gets them from one scan of the counted tables
(`build`), which its processor runs before applying anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from partition_worker import keys
from partition_worker.store import PartitionStore, Transaction


class RowCount:
    """A count row, changed in place while its transaction holds it (encoded once, at commit)."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def encode(self) -> bytes:
        return keys.encode_u64(self.value)

    @staticmethod
    def decode(raw: bytes) -> RowCount:
        return RowCount(keys.decode_u64(raw))


def add(txn: Transaction, row: bytes, delta: int) -> None:
    """Move the count at `row` by `delta` (a missing row counts 0)."""
    count = txn.get_object(row, RowCount.decode)
    if count is None:
        count = RowCount(0)
        txn.put_object(row, count)
    count.value += delta
    assert count.value >= 0, f"the count at {row!r} went below zero: a row was removed that was never counted"


def value(txn: Transaction, row: bytes) -> int | None:
    """The count at `row`, seeing this transaction's moves; None if there is no row (not counted yet)."""
    count = txn.get_object(row, RowCount.decode)
    return None if count is None else count.value


def add_if_counted(txn: Transaction, row: bytes, delta: int) -> None:
    """Move the count at `row` by `delta` if it has been counted (a count whose absence means "unknown", not 0).

    The running count (`keys.RUNNING_COUNT`) is such a count: the first
    `AnnounceLeader` that finds none counts the running index while it reads
    it anyway, so stores of any age get it without a separate pass.
    """
    count = txn.get_object(row, RowCount.decode)
    if count is not None:
        count.value += delta
        assert count.value >= 0, f"the count at {row!r} went below zero: a row was removed that was never counted"


@dataclass(frozen=True, slots=True)
class Counts:
    """How many timer rows a partition holds, and inbox rows per service (services with none left out)."""

    timers: int = 0
    inbox_by_service: dict[str, int] = field(default_factory=dict)


def read(store: PartitionStore) -> Counts | None:
    """The stored counts: two reads and one row per service that ever had an inbox entry; None until they are built."""
    if store.get(keys.COUNTS_COMPLETE) is None:
        return None
    raw = store.get(keys.TIMER_COUNT)
    inbox = {}
    for row, value in store.scan(keys.INBOX_COUNT_PREFIX):
        if length := keys.decode_u64(value):
            inbox[keys.inbox_count_service_of(row)] = length
    return Counts(keys.decode_u64(raw) if raw is not None else 0, inbox)


STOP_CHECK_ROWS = 1_024
"""`build` asks whether to stop every this many rows."""


def scan(store: PartitionStore) -> Counts:
    """The counts by reading every counted row: what the stored counts must equal (the cost grows with the rows)."""
    counted = _scan(store, lambda: False)
    assert counted is not None, "a scan nobody stops ends"
    return counted


def _scan(store: PartitionStore, stopped: Callable[[], bool]) -> Counts | None:
    timers = 0
    for _ in _rows(store.scan(keys.TIMER_PREFIX), stopped):
        timers += 1
    inbox: Counter[str] = Counter()
    for row in _rows(store.scan(keys.INBOX_PREFIX), stopped):
        inbox[keys.inbox_service_of(row)] += 1
    return None if stopped() else Counts(timers, dict(inbox))


def _rows(rows: Iterator[tuple[bytes, bytes]], stopped: Callable[[], bool]) -> Iterator[bytes]:
    for number, (row, _) in enumerate(rows):
        if number % STOP_CHECK_ROWS == 0 and stopped():
            return
        yield row


def build(store: PartitionStore, stopped: Callable[[], bool] = lambda: False) -> Counts | None:
    """Write the counts of a store that has none, from one scan, in one write with `keys.COUNTS_COMPLETE`.

    Blocking and as long as the counted tables: a processor runs it in a
    worker thread (at once for a store that has applied nothing) before it
    applies any record, so no apply races with it. Once `stopped()` is true
    it ends within `STOP_CHECK_ROWS` rows and writes nothing (None).
    """
    counted = _scan(store, stopped)
    if counted is None:
        return None
    puts: dict[bytes, bytes | None] = {row: None for row, _ in store.scan(keys.INBOX_COUNT_PREFIX)}  # none expected; never stale
    puts[keys.TIMER_COUNT] = keys.encode_u64(counted.timers)
    for service, length in counted.inbox_by_service.items():
        puts[keys.inbox_count_key(service)] = keys.encode_u64(length)
    puts[keys.COUNTS_COMPLETE] = b""
    store.write(puts)
    return counted
