"""Tests of the partitioner: stable partition keys and contiguous partition key ranges."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from protocol.routing import partition_key_for_key
from wal.partitioner import PARTITION_KEY_LIMIT, partition_key_range, partition_of

PARTITION_COUNTS = [1, 2, 3, 7, 24, 128, 1000, 65536]


def test_partition_keys_are_pinned() -> None:
    """Partition keys are stored (in invocation ids and records): these values must never change."""
    assert partition_key_for_key("alice") == 5614559425216174729
    assert partition_key_for_key("") == 16476032584258269876
    assert partition_key_for_key("ключ-🔑") == 12845025216238194315


def test_partition_key_depends_only_on_the_key() -> None:
    keys = [f"key-{index}" for index in range(1000)]
    assert [partition_key_for_key(key) for key in keys] == [partition_key_for_key(key) for key in keys]
    assert len({partition_key_for_key(key) for key in keys}) == len(keys)
    assert all(0 <= partition_key_for_key(key) < PARTITION_KEY_LIMIT for key in keys)


def test_partition_key_refuses_non_strings() -> None:
    with pytest.raises(TypeError, match="key must be a str, got bytes"):
        partition_key_for_key(b"alice")  # type: ignore[arg-type]


@pytest.mark.parametrize("partition_count", PARTITION_COUNTS)
def test_ranges_cover_the_key_space_without_gaps_or_overlaps(partition_count: int) -> None:
    next_first = 0
    for partition in range(partition_count):
        first, last = partition_key_range(partition, partition_count)
        assert first == next_first
        assert first <= last
        assert partition_of(first, partition_count) == partition
        assert partition_of(last, partition_count) == partition
        if partition > 0:
            assert partition_of(first - 1, partition_count) == partition - 1
        next_first = last + 1
    assert next_first == PARTITION_KEY_LIMIT


@pytest.mark.parametrize("partition_count", PARTITION_COUNTS)
def test_partition_of_agrees_with_the_ranges(partition_count: int) -> None:
    rng = random.Random(partition_count)
    for _ in range(200):
        partition_key = rng.randrange(PARTITION_KEY_LIMIT)
        partition = partition_of(partition_key, partition_count)
        first, last = partition_key_range(partition, partition_count)
        assert first <= partition_key <= last


def test_extreme_keys() -> None:
    assert partition_of(0, 24) == 0
    assert partition_of(PARTITION_KEY_LIMIT - 1, 24) == 23
    assert partition_key_range(0, 1) == (0, PARTITION_KEY_LIMIT - 1)


def test_keys_spread_evenly() -> None:
    partition_count = 16
    counts = Counter(partition_of(partition_key_for_key(f"user-{index}"), partition_count) for index in range(16_000))
    assert len(counts) == partition_count
    assert all(800 <= count <= 1200 for count in counts.values()), counts


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="partition_key must be in 0..2\\^64-1, got -1"):
        partition_of(-1, 4)
    with pytest.raises(ValueError, match="partition_key must be in"):
        partition_of(PARTITION_KEY_LIMIT, 4)
    with pytest.raises(ValueError, match="partition_count must be at least 1, got 0"):
        partition_of(5, 0)
    with pytest.raises(ValueError, match="partition must be in 0..3, got 4"):
        partition_key_range(4, 4)
