"""Tests of `LocalPartitionKeys` and `new_invocation_id(place=...)`: fresh unkeyed ids land on the owned partitions, spread over all of them."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ingress.local_partitions import LocalPartitionKeys
from protocol.routing import (
    callee_invocation_id,
    idempotent_invocation_id,
    keyed_or_random_id,
    new_invocation_id,
    partition_key_for_key,
    partition_key_of,
    workflow_invocation_id,
)
from wal.partitioner import PARTITION_KEY_LIMIT, partition_key_range, partition_of


@pytest.mark.parametrize(("partition_count", "owned"), [(4, {0, 2}), (4, {1, 3}), (24, {5}), (24, set(range(1, 24, 2))), (7, {0, 6})])
def test_fresh_unkeyed_ids_fall_in_the_owned_partitions_and_spread_over_all_of_them(partition_count: int, owned: set[int]) -> None:
    keys = LocalPartitionKeys(partition_count)
    keys.own(owned)
    assert keys.owned == tuple(sorted(owned))
    draws = 400 * len(owned)
    landed = Counter(partition_of(partition_key_of(new_invocation_id(place=keys.place)), partition_count) for _ in range(draws))
    assert set(landed) == owned, "every id on an owned partition, and every owned partition used"
    expected = draws / len(owned)
    assert all(0.7 * expected < count < 1.3 * expected for count in landed.values()), landed


def test_placed_keys_cover_each_partitions_whole_range() -> None:
    keys = LocalPartitionKeys(4)
    keys.own({1, 3})
    assert keys.place(0) == partition_key_range(1, 4)[0], "the lowest draw: the first key of the first owned partition"
    assert keys.place(PARTITION_KEY_LIMIT - 1) == partition_key_range(3, 4)[1], "the highest: the last key of the last"
    rng = random.Random(7)
    for _ in range(10_000):
        placed = keys.place(rng.randrange(PARTITION_KEY_LIMIT))
        assert partition_of(placed, 4) in (1, 3)
    first, last = partition_key_range(3, 4)
    quarter = (last - first + 1) // 4
    within = Counter((keys.place(rng.randrange(PARTITION_KEY_LIMIT)) - first) // quarter for _ in range(4_000))
    assert set(within) >= {0, 1, 2, 3}, "keys spread over the partition's range, not bunched at its start"


@pytest.mark.parametrize("owned", [set(), {0, 1, 2, 3}])
def test_with_none_or_all_partitions_owned_the_random_key_is_kept_as_drawn(owned: set[int]) -> None:
    keys = LocalPartitionKeys(4)
    keys.own({1})
    keys.own(owned)  # a Kafka node whose partitions were all revoked, or a node of one worker
    assert keys.owned == ()
    rng = random.Random(3)
    draws = [rng.randrange(PARTITION_KEY_LIMIT) for _ in range(1_000)]
    assert [keys.place(draw) for draw in draws] == draws
    landed = Counter(partition_of(partition_key_of(new_invocation_id(place=keys.place)), 4) for _ in range(2_000))
    assert set(landed) == {0, 1, 2, 3}, "uniform over every partition"


def test_deterministic_and_keyed_ids_ignore_the_owned_partitions() -> None:
    keys = LocalPartitionKeys(4)
    keys.own({0})
    far = next(key for key in (f"k{n}" for n in range(100)) if partition_of(partition_key_for_key(key), 4) == 3)
    assert partition_key_of(keyed_or_random_id(far, keys.place)) == partition_key_for_key(far), "a keyed id keeps its key's partition"
    assert partition_key_of(new_invocation_id(partition_key_for_key(far), keys.place)) == partition_key_for_key(far)
    caller = keyed_or_random_id(None)
    assert callee_invocation_id(caller, 3, None) == callee_invocation_id(caller, 3, None)
    assert idempotent_invocation_id("Greeter", None, "greet", "k") == idempotent_invocation_id("Greeter", None, "greet", "k")
    assert workflow_invocation_id("Signup", far) == workflow_invocation_id("Signup", far)
    assert partition_key_of(workflow_invocation_id("Signup", far)) == partition_key_for_key(far)
