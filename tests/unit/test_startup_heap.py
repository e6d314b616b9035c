"""A node freezes its startup heap once it serves: later full collections do not walk it, later garbage is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from duro.node import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as usual
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_startup_objects_leave_the_collected_generations(unfrozen: None) -> None:
    startup = [{"n": i} for i in range(10_000)]
    assert gc.get_freeze_count() == 0
    freeze_startup_heap(700)
    assert gc.get_freeze_count() >= len(startup)
    tracked = {id(obj) for generation in range(3) for obj in gc.get_objects(generation)}
    assert id(startup) not in tracked
    assert not any(id(item) in tracked for item in startup)


def test_garbage_made_after_the_freeze_is_still_collected(unfrozen: None) -> None:
    freeze_startup_heap(700)
    node = _Node()
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # the cycle keeps it until a collection
    gc.collect()
    assert gone() is None


def test_the_youngest_generation_is_collected_after_the_configured_allocations(unfrozen: None) -> None:
    _, older, oldest = gc.get_threshold()
    freeze_startup_heap(12_345)
    assert gc.get_threshold() == (12_345, older, oldest), "only the youngest generation's threshold changes"
    node = _Node()
    gone = weakref.ref(node)
    del node
    garbage = [[] for _ in range(11_000)]  # fewer net allocations than the threshold: no collection yet
    assert gone() is not None, "700 (Python's default) would have collected it by now"
    garbage += [[] for _ in range(2_000)]  # past the threshold: a young collection runs
    assert gone() is None, "the cycle made before was collected without an explicit gc.collect()"
    del garbage
