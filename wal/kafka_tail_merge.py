"""`TailMerge`: one Kafka tail's next offset, fed by the fetcher and by this node's own acknowledged appends, in log order.

A tail that waited for the fetcher to bring back what its own node appended
paid a fetch round trip after every acknowledgement (a hot key's hand-overs run
in series, one such round trip each). The node's appends are durable once the
broker acknowledged them (acks=all: every in-sync replica holds them, and the
high watermark, below which consumers read, has passed them), and the
acknowledgement says where they are: so the tail takes them from there at once.

Entries reach a tail in strictly contiguous offsets from `next_offset`, and
each once, whichever path brings it first:

- from the fetcher (`fetched`): every entry of the partition, this node's and
  other nodes' (an Invoke appended by another node's ingress, a new leader's
  announcement) in offset order; what the tail has already taken is skipped;
- from this node's acknowledgements (`acknowledged`): a run that starts at or
  below `next_offset` is taken at once (its part not yet taken); a run beyond it
  waits in a bounded buffer for the fetcher to bring the entries between (the
  gap holds other writers' entries, which only the fetcher knows), and is taken
  from the buffer as soon as the gap is filled. A run that does not fit in the
  buffer (`max_ahead_bytes`) is dropped: the fetcher brings it later.

So the order entries are applied in is the log's order whatever the paths'
timing; a deposed leader's own appends land at their true offsets, after the
new leader's announcement that precedes them in the log, and are fenced off by
its epoch as the fetched copies would be.

Why an acknowledgement says exactly which offsets hold which entries, for the
producer `wal.kafka` uses (idempotent, not transactional, one batch per append
group, at most one batch per partition in flight):

- The broker gives the records of one batch consecutive offsets from the
  batch's base offset (apache/kafka `storage/.../log/internals/LogValidator.java`:
  `assignOffsetsNonCompressed` gives each record `offsetCounter.value++`; a
  compressed batch is either renumbered the same way or keeps its consecutive
  inner offsets and gets `setLastOffset(base + count - 1)`), and the produce
  response carries that base offset, which aiokafka hands to the batch's future
  as `RecordMetadata.offset` (aiokafka 0.14 `producer/sender.py`
  `handle_response` -> `producer/message_accumulator.py` `MessageBatch.done`).
- A retried batch the broker already holds is answered with the offsets it got
  the first time (apache/kafka `core/.../log/UnifiedLog.scala`: a duplicate
  found by `analyzeAndValidateProducerState` sets the append info's first and
  last offset from the retained batch metadata). Only when that metadata is gone
  does the broker answer DUPLICATE_SEQUENCE_NUMBER, which aiokafka resolves
  with the response's offset, -1 (`sender.py`): a negative base offset is never
  handed to a tail (the fetcher brings those entries).
- Control records, the one kind of entry that takes an offset without being a
  producer's record, are written only for transactions; duro's topic has none
  (a transactional writer to it already breaks the tails' contiguity check).
"""

from __future__ import annotations

from collections.abc import Sequence

from wal.log import ENTRY_ALLOWANCE_BYTES

Entry = tuple[int, bytes]


class OffsetJumpError(Exception):
    """The fetcher brought an entry beyond the tail's next offset: the partition's offsets are not dense."""

    def __init__(self, expected_offset: int, fetched_offset: int) -> None:
        super().__init__(f"expected offset {expected_offset}, fetched {fetched_offset}")
        self.expected_offset = expected_offset
        self.fetched_offset = fetched_offset


class TailMerge:
    """One tail's position and the acknowledged entries of this node held ahead of it (at most `max_ahead_bytes`)."""

    __slots__ = ("_ahead", "_ahead_bytes", "_ahead_last", "max_ahead_bytes", "next_offset")

    def __init__(self, next_offset: int, max_ahead_bytes: int) -> None:
        assert next_offset >= 0, f"a tail starts at an offset >= 0, got {next_offset}"
        self.next_offset = next_offset  # the offset of the next entry the tail is to receive
        self.max_ahead_bytes = max_ahead_bytes
        self._ahead: dict[int, bytes] = {}  # offset -> entry, offsets ascending in insertion order, all > next_offset - 1
        self._ahead_bytes = 0
        self._ahead_last = -1  # the highest offset ever put in `_ahead` since it was last emptied

    @property
    def ahead_bytes(self) -> int:
        """What the entries held ahead of the tail count against `max_ahead_bytes` (their payloads plus an allowance each)."""
        return self._ahead_bytes

    @property
    def ahead_entries(self) -> int:
        return len(self._ahead)

    def fetched(self, entries: Sequence[Entry]) -> list[Entry]:
        """Entries the fetcher brought, in offset order: what the tail takes now, in order (with held entries the gap closed).

        Raises OffsetJumpError if an entry lies beyond the next offset (the
        fetcher reads every offset, so the partition has a hole).
        """
        taken: list[Entry] = []
        next_offset = self.next_offset
        for entry in entries:
            offset = entry[0]
            if offset < next_offset:
                continue  # taken already: acknowledged earlier, or fetched before a reseek
            if offset != next_offset:
                raise OffsetJumpError(next_offset, offset)
            taken.append(entry)
            next_offset += 1
        self.next_offset = next_offset
        if self._ahead:
            self._take_ahead(taken)
        return taken

    def acknowledged(self, base_offset: int, entries: Sequence[bytes]) -> list[Entry]:
        """This node's entries the broker acknowledged at `base_offset` on: what the tail takes now, in order.

        Entries beyond a gap are held (if they fit) until the fetcher fills it;
        entries the tail has taken already are skipped.
        """
        if base_offset < 0:
            return []  # the broker did not say where they are: the fetcher brings them
        end_offset = base_offset + len(entries)
        next_offset = self.next_offset
        if end_offset <= next_offset:
            return []
        if base_offset > next_offset:
            self._hold(base_offset, entries)
            return []
        taken = [(base_offset + index, entries[index]) for index in range(next_offset - base_offset, len(entries))]
        self.next_offset = end_offset
        if self._ahead:
            self._take_ahead(taken)
        return taken

    def drop_ahead(self) -> None:
        """Forget the held entries (after a reassignment or a trim); the fetcher brings them."""
        self._ahead.clear()
        self._ahead_bytes = 0
        self._ahead_last = -1

    def _hold(self, base_offset: int, entries: Sequence[bytes]) -> None:
        if base_offset <= self._ahead_last:
            self.drop_ahead()  # acknowledgements out of order (cannot happen with one batch in flight): keep only the newest
        size = sum(len(entry) for entry in entries) + ENTRY_ALLOWANCE_BYTES * len(entries)
        if self._ahead_bytes + size > self.max_ahead_bytes:
            return  # over the bound: the fetcher brings them
        for index, entry in enumerate(entries):
            self._ahead[base_offset + index] = entry
        self._ahead_bytes += size
        self._ahead_last = base_offset + len(entries) - 1

    def _take_ahead(self, taken: list[Entry]) -> None:
        """Move the held entries that now follow `next_offset` into `taken`; drop those the tail has passed."""
        ahead = self._ahead
        next_offset = self.next_offset
        while ahead:
            offset = next(iter(ahead))
            if offset > next_offset:
                break
            entry = ahead.pop(offset)
            self._ahead_bytes -= len(entry) + ENTRY_ALLOWANCE_BYTES
            if offset == next_offset:
                taken.append((offset, entry))
                next_offset += 1
        self.next_offset = next_offset
        if not ahead:
            self._ahead_bytes = 0
            self._ahead_last = -1
