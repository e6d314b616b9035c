"""`TailMerge`: a Kafka tail's entries from the fetcher and from this node's acknowledgements, each once, in log order."""

from __future__ import annotations

import random

import pytest

from wal.kafka_tail_merge import OffsetJumpError, TailMerge
from wal.log import ENTRY_ALLOWANCE_BYTES

BIG = 1 << 20


def entries(first: int, count: int) -> list[tuple[int, bytes]]:
    return [(offset, f"e{offset}".encode()) for offset in range(first, first + count)]


def values(first: int, count: int) -> list[bytes]:
    return [value for _, value in entries(first, count)]


def test_an_acknowledged_run_at_the_next_offset_is_taken_at_once() -> None:
    merge = TailMerge(5, BIG)
    assert merge.acknowledged(5, values(5, 3)) == entries(5, 3)
    assert merge.next_offset == 8
    assert merge.fetched(entries(5, 3)) == []  # the fetcher's copies are duplicates
    assert merge.fetched(entries(5, 4)) == entries(8, 1)
    assert merge.next_offset == 9


def test_what_the_fetcher_brought_first_is_not_taken_again_when_acknowledged() -> None:
    merge = TailMerge(0, BIG)
    assert merge.fetched(entries(0, 4)) == entries(0, 4)
    assert merge.acknowledged(2, values(2, 2)) == []
    assert merge.acknowledged(3, values(3, 3)) == entries(4, 2)  # only the part beyond what was fetched
    assert merge.next_offset == 6


def test_a_run_beyond_a_gap_waits_for_the_fetcher_to_fill_it() -> None:
    merge = TailMerge(10, BIG)
    assert merge.acknowledged(12, values(12, 2)) == []  # 10 and 11 are another writer's: unknown here
    assert merge.next_offset == 10
    assert merge.ahead_entries == 2
    assert merge.fetched(entries(10, 1)) == entries(10, 1)  # the gap is not closed yet
    assert merge.fetched(entries(11, 1)) == entries(11, 3)  # closed: the held run follows at once
    assert merge.next_offset == 14
    assert merge.ahead_entries == 0
    assert merge.ahead_bytes == 0
    assert merge.fetched(entries(12, 2)) == []


def test_held_entries_the_fetcher_brings_itself_are_taken_once() -> None:
    merge = TailMerge(0, BIG)
    assert merge.acknowledged(3, values(3, 2)) == []
    assert merge.acknowledged(7, values(7, 1)) == []
    assert merge.fetched(entries(0, 6)) == entries(0, 6)  # 3 and 4 from the fetch; 5 too; 7 still waits for 6
    assert merge.ahead_entries == 1
    assert merge.fetched(entries(6, 1)) == entries(6, 2)
    assert merge.ahead_entries == 0


def test_an_acknowledged_run_that_closes_the_gap_to_held_entries_takes_them() -> None:
    merge = TailMerge(0, BIG)
    assert merge.acknowledged(4, values(4, 2)) == []
    assert merge.fetched(entries(0, 2)) == entries(0, 2)
    assert merge.acknowledged(2, values(2, 2)) == entries(2, 4)
    assert merge.next_offset == 6


def test_runs_beyond_the_bound_are_left_to_the_fetcher() -> None:
    one_entry_bytes = len(b"e10") + ENTRY_ALLOWANCE_BYTES
    merge = TailMerge(0, max_ahead_bytes=2 * one_entry_bytes)
    assert merge.acknowledged(10, values(10, 2)) == []
    assert merge.ahead_bytes == 2 * one_entry_bytes
    assert merge.acknowledged(12, values(12, 1)) == []  # does not fit: dropped
    assert merge.ahead_entries == 2
    assert merge.fetched(entries(0, 10)) == entries(0, 12)
    assert merge.ahead_bytes == 0
    assert merge.fetched(entries(10, 3)) == entries(12, 1)  # the dropped one came from the fetcher
    assert merge.acknowledged(14, values(14, 1)) == []  # room again
    assert merge.ahead_entries == 1


def test_an_acknowledgement_without_a_known_offset_is_left_to_the_fetcher() -> None:
    merge = TailMerge(0, BIG)
    assert merge.acknowledged(-1, values(0, 2)) == []
    assert merge.next_offset == 0
    assert merge.ahead_entries == 0


def test_a_hole_in_the_fetched_offsets_is_an_error() -> None:
    merge = TailMerge(3, BIG)
    with pytest.raises(OffsetJumpError, match="expected offset 3, fetched 5") as raised:
        merge.fetched([(5, b"x")])
    assert (raised.value.expected_offset, raised.value.fetched_offset) == (3, 5)


def test_dropping_the_held_entries_leaves_them_to_the_fetcher() -> None:
    merge = TailMerge(0, BIG)
    merge.acknowledged(2, values(2, 2))
    merge.drop_ahead()
    assert (merge.ahead_entries, merge.ahead_bytes) == (0, 0)
    assert merge.fetched(entries(0, 2)) == entries(0, 2)
    assert merge.fetched(entries(2, 2)) == entries(2, 2)


def test_acknowledgements_out_of_order_keep_only_the_newest_run() -> None:
    merge = TailMerge(0, BIG)
    merge.acknowledged(8, values(8, 2))
    merge.acknowledged(5, values(5, 1))  # cannot happen with one batch in flight; handled by forgetting the older run
    assert merge.ahead_entries == 1
    assert merge.fetched(entries(0, 5)) == entries(0, 6)
    assert merge.fetched(entries(6, 4)) == entries(6, 4)


@pytest.mark.parametrize("seed", range(40))
def test_two_writers_any_timing_the_tail_yields_exactly_the_log_in_order(seed: int) -> None:
    """A log written by this node and another, fetched in random chunks at random times, acknowledged runs of this node arriving early or late."""
    rng = random.Random(seed)
    log: list[tuple[int, bytes]] = []
    local_runs: list[tuple[int, list[bytes]]] = []  # (base offset, entries) of this node, in offset order
    while len(log) < 300:
        base = len(log)
        local = rng.random() < 0.6
        run = [f"{'local' if local else 'other'}-{base + index}".encode() for index in range(rng.randint(1, 5))]
        if local:
            local_runs.append((base, run))
        log.extend((base + index, entry) for index, entry in enumerate(run))
    merge = TailMerge(rng.randint(0, 20), max_ahead_bytes=rng.choice([40, 200, BIG]))
    start = merge.next_offset
    taken: list[tuple[int, bytes]] = []
    fetched_up_to = rng.randint(0, start)  # the fetcher may start below the tail (a reseek)
    acknowledged_runs = 0
    while fetched_up_to < len(log) or acknowledged_runs < len(local_runs):
        # An acknowledgement arrives once the broker wrote the run: never before the fetcher could see it, but maybe long after.
        if acknowledged_runs < len(local_runs) and rng.random() < 0.5:
            base, run = local_runs[acknowledged_runs]
            taken.extend(merge.acknowledged(base, run))
            acknowledged_runs += 1
        elif fetched_up_to < len(log):
            chunk = rng.randint(1, 8)
            taken.extend(merge.fetched(log[fetched_up_to : fetched_up_to + chunk]))
            fetched_up_to += chunk
        assert merge.ahead_bytes <= merge.max_ahead_bytes
    assert taken == log[start:]
    assert merge.ahead_entries == 0
